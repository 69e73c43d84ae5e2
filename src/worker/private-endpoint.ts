import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { ClientHttp2Session } from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import {
  type GrpcHealthVerdict,
  grpcHealthCall,
  grpcVerdict,
  healthService,
} from '../grpc/grpc-health.js';
import { h2Get, openH2 } from '../http2/h2-get.js';
import type { HttpProtocol } from '../protocol/ipc.js';
import { httpProtocolOf, isTls } from './http-protocol.js';

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
  /** An HTTP/2 app's requests share one session, opened by the first. */
  private h2: ClientHttp2Session | undefined;

  private constructor(
    private readonly dir: string,
    private readonly listener: net.Server,
    /** The app's server speaks TLS: requests go through `https` without checking the cert. */
    readonly secure: boolean,
    /** What the app speaks: HTTP/2 apps are asked over HTTP/2. */
    readonly http: HttpProtocol,
  ) {}

  /** Path of the Unix socket. */
  get socketPath(): string {
    return join(this.dir, 's');
  }

  /** Opens an endpoint in front of `server`. */
  static async open(server: net.Server): Promise<PrivateEndpoint> {
    const dir = mkdtempSync(join(tmpdir(), 'prefork-self-'));
    const listener = net.createServer((socket) => server.emit('connection', socket));
    const endpoint = new PrivateEndpoint(dir, listener, isTls(server), httpProtocolOf(server));
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
    if (this.http === 'grpc') return this.checkGrpc(path, options).then(({ status }) => status);
    if (this.http !== 'http/1.1') {
      const headers = { ...options.headers, 'user-agent': options.userAgent };
      return h2Get(this.session(), path, { headers, timeoutMs, signal: options.signal });
    }
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

  /**
   * A gRPC app's answer to the health check of the service `path` names (`healthService`),
   * read as `grpcVerdict` does. Rejects as {@link get} does.
   */
  async checkGrpc(path: string, options: GetOptions): Promise<GrpcHealthVerdict> {
    const service = healthService(path);
    const headers = { ...options.headers, 'user-agent': options.userAgent };
    const { timeoutMs, signal } = options;
    const answer = await grpcHealthCall(this.session(), service, { headers, timeoutMs, signal });
    return grpcVerdict(answer, service);
  }

  /** The HTTP/2 session to the app, opened on first use (and again if it was closed). */
  private session(): ClientHttp2Session {
    if (this.h2 === undefined || this.h2.closed || this.h2.destroyed) {
      const path = this.socketPath;
      this.h2 = this.secure
        ? openH2('https://localhost', () =>
            tls.connect({ path, ALPNProtocols: ['h2'], rejectUnauthorized: false }),
          )
        : openH2('http://localhost', () => net.connect(path));
    }
    return this.h2;
  }

  /** Stops listening and removes the directory. */
  close(): void {
    this.h2?.destroy();
    this.listener.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
