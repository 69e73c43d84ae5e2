import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';

/** How {@link PrivateEndpoint.get} sends its request. */
export interface GetOptions {
  userAgent: string;
  headers?: Record<string, string>;
  /** Fails the request when no data moved for this long; none when undefined. */
  timeoutMs?: number;
  agent?: http.Agent;
  signal?: AbortSignal;
}

/**
 * A way for a worker to send requests to its own app without the shared listen sockets, which
 * would hand them to whichever worker accepts first — another generation's included. It is a
 * Unix socket in an owner-only temporary directory whose connections are handed to the app's
 * server as if they came from a listen socket; only this process knows its path.
 */
export class PrivateEndpoint {
  private constructor(
    private readonly dir: string,
    private readonly listener: net.Server,
    /** The app's server speaks TLS: requests go through `https` without checking the cert. */
    readonly secure: boolean,
  ) {}

  /** Path of the Unix socket. */
  get socketPath(): string {
    return join(this.dir, 's');
  }

  /** Opens an endpoint in front of `server`. */
  static async open(server: net.Server): Promise<PrivateEndpoint> {
    const dir = mkdtempSync(join(tmpdir(), 'prefork-self-'));
    const listener = net.createServer((socket) => server.emit('connection', socket));
    const endpoint = new PrivateEndpoint(dir, listener, server instanceof tls.Server);
    try {
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen(endpoint.socketPath, resolve);
      });
    } catch (error) {
      endpoint.close();
      throw error;
    }
    return endpoint;
  }

  /**
   * GETs `path`, reading the answer to its end, through `agent` (a fresh connection without
   * one). Resolves with the response status; rejects when the request fails, is aborted
   * through `signal`, or `timeoutMs` (when given) passes first.
   */
  get(path: string, options: GetOptions): Promise<number> {
    const { timeoutMs } = options;
    return new Promise((resolve, reject) => {
      const request = (this.secure ? https : http).get(
        {
          socketPath: this.socketPath,
          path,
          headers: { ...options.headers, 'user-agent': options.userAgent },
          agent: options.agent ?? false,
          rejectUnauthorized: false,
          signal: options.signal,
        },
        (response) => {
          response.resume();
          response.once('end', () => resolve(response.statusCode ?? 0));
          response.once('error', reject);
        },
      );
      if (timeoutMs !== undefined) {
        request.setTimeout(Math.max(1, timeoutMs), () =>
          request.destroy(new Error(`no answer within ${timeoutMs} ms`)),
        );
      }
      request.once('error', reject);
    });
  }

  /** Stops listening and removes the directory. */
  close(): void {
    this.listener.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
