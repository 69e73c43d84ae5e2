import { chmodSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import * as v from 'valibot';
import { CONTROL_PROTOCOL } from '../protocol/versions.js';
import {
  CONTROL_MAX_REQUEST,
  type ControlReply,
  type ControlRequest,
  ControlRequestSchema,
  describeIssues,
  UNKNOWN_REQUEST,
} from './schema.js';

/** Answers one control request, at once or later; throwing (rejecting) replies `{ ok: false, error }`. */
export type ControlHandler = (request: ControlRequest) => unknown;

/** A request line as the schema reads it, or why it is not one. */
function parseRequest(line: string): ControlRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new Error(`the request is not JSON; ${UNKNOWN_REQUEST}`);
  }
  const parsed = v.safeParse(ControlRequestSchema, value);
  if (parsed.success) return parsed.output;
  throw new Error(`${UNKNOWN_REQUEST} (${describeIssues(parsed.issues)})`);
}

/**
 * The master's control socket: a Unix socket (mode 0600) that takes one JSON line per
 * connection and answers one JSON line. Malformed or oversized requests get an error reply;
 * they never reach the master's state.
 */
export class ControlServer {
  private readonly server: net.Server;

  private constructor(
    readonly path: string,
    handler: ControlHandler,
  ) {
    this.server = net.createServer((socket) => {
      let buffer = '';
      const reply = (body: ControlReply) => {
        socket.end(`${JSON.stringify({ ...body, protocol: CONTROL_PROTOCOL })}\n`);
      };
      socket.setEncoding('utf8');
      socket.setTimeout(5000, () => socket.destroy());
      socket.on('error', () => socket.destroy());
      socket.on('data', (chunk: string) => {
        buffer += chunk;
        if (buffer.length > CONTROL_MAX_REQUEST) {
          socket.removeAllListeners('data');
          reply({ ok: false, error: `request larger than ${CONTROL_MAX_REQUEST} bytes` });
          return;
        }
        const newline = buffer.indexOf('\n');
        if (newline < 0) return;
        socket.removeAllListeners('data');
        const line = buffer.slice(0, newline);
        Promise.resolve()
          .then(() => handler(parseRequest(line)))
          .then(
            (result) => reply({ ok: true, result }),
            (error: unknown) => reply({ ok: false, error: (error as Error).message }),
          );
      });
    });
  }

  /** Listens on `path` with owner-only permissions (the umask covers the bind itself). */
  static async listen(path: string, handler: ControlHandler): Promise<ControlServer> {
    const control = new ControlServer(path, handler);
    try {
      unlinkSync(path);
    } catch {
      // no stale socket
    }
    const umask = process.umask(0o077);
    try {
      await new Promise<void>((resolve, reject) => {
        control.server.once('error', reject);
        control.server.listen(path, () => resolve());
      });
    } finally {
      process.umask(umask);
    }
    chmodSync(path, 0o600);
    control.server.unref();
    return control;
  }

  /** Stops listening and removes the socket file. */
  close(): void {
    this.server.close();
    try {
      unlinkSync(this.path);
    } catch {
      // gone already
    }
  }
}
