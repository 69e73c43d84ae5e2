import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** How long to wait between writes to a pipe that is full (EAGAIN), and how often to try. */
const BUSY_WAIT_MS = 10;
const BUSY_TRIES = 100;

/**
 * Where log lines go: a file (appended, reopened on USR1) or stdout. Every line is written
 * synchronously and completely, or dropped: a log that cannot be written (a full disk, a
 * file made read-only) never blocks or kills the process that logs. (pino's own destination
 * retries such writes forever when flushed.)
 */
export class LogDestination {
  private fd: number;
  private failing = false;

  /** `file` undefined: stdout. `onError` hears about the first failure after each success. */
  constructor(
    private readonly file: string | undefined,
    private readonly onError: (error: NodeJS.ErrnoException) => void,
  ) {
    this.fd = file === undefined ? 1 : LogDestination.open(file);
  }

  private static open(file: string): number {
    mkdirSync(dirname(file), { recursive: true });
    return openSync(file, 'a', 0o600);
  }

  /** Called by pino with one serialized line. */
  write(line: string): void {
    const data = Buffer.from(line);
    let offset = 0;
    let busy = 0;
    while (offset < data.length) {
      try {
        offset += writeSync(this.fd, data, offset);
        this.failing = false;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' && busy < BUSY_TRIES) {
          busy += 1;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, BUSY_WAIT_MS);
          continue;
        }
        if (!this.failing) this.onError(error as NodeJS.ErrnoException);
        this.failing = true;
        return;
      }
    }
  }

  /** Opens the file again (logrotate moved it); the old descriptor is closed. */
  reopen(): void {
    if (this.file === undefined) return;
    try {
      const fd = LogDestination.open(this.file);
      const old = this.fd;
      this.fd = fd;
      closeSync(old);
      this.failing = false;
    } catch (error) {
      this.onError(error as NodeJS.ErrnoException);
    }
  }
}
