import { closeSync, writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { ENV_READY_FD } from '../protocol/env.js';
import { parseReadyMessage, type ReadyMessage } from '../protocol/handover.js';

/**
 * The writing end of the ready pipe this master was given (`PREFORK_READY_FD`), by an old
 * master on USR2 or by `start --daemon`. Written once: ready, or the reason it never will be.
 */
export class ReadyPipe {
  private fd: number | undefined;

  constructor(env: NodeJS.ProcessEnv = process.env) {
    const raw = env[ENV_READY_FD];
    this.fd = raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : undefined;
  }

  /** Reports `message` to whoever spawned this master and closes the pipe. */
  send(message: ReadyMessage): void {
    if (this.fd === undefined) return;
    try {
      writeSync(this.fd, `${JSON.stringify(message)}\n`);
      closeSync(this.fd);
    } catch {
      // the reader is gone; nothing to tell
    }
    this.fd = undefined;
  }
}

/**
 * Reads the one message a spawned master writes on its ready pipe. Resolves undefined when the
 * pipe closes without one (the master died first).
 */
export function readReadyMessage(stream: Readable): Promise<ReadyMessage | undefined> {
  return new Promise((resolve) => {
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      text += chunk;
    });
    stream.on('error', () => resolve(undefined));
    stream.on('close', () => {
      const line = text.split('\n')[0] ?? '';
      resolve(line ? parseReadyMessage(line) : undefined);
    });
  });
}
