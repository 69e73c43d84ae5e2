import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { ServerResponse } from 'node:http';
import type { ServerHttp2Stream } from 'node:http2';
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import { emptyFigures, recordResponse } from '../figures/figures.js';
import type { RequestFigures } from '../protocol/figures.js';
import { isHttp2 } from './http-protocol.js';

/** Node's channel for every HTTP response handed to the kernel (Node ≥ 18.7). */
const RESPONSE_FINISH = 'http.server.response.finish';

/** What that channel publishes. */
interface ResponseFinish {
  server: unknown;
  socket: net.Socket;
  response: ServerResponse;
}

/**
 * Counts a worker's responses by status class and latency (`RequestFigures`, sent with every
 * heartbeat) when metrics are on. It adds no listener per request: one subscriber on Node's
 * `http.server.response.finish` diagnostics channel sees every response, and the request's
 * start is the time the connection tracker noted when the request arrived (`startOf`).
 */
export class RequestRecorder {
  /** Since the worker started serving (after its warm-up), over the spans it was counting. */
  figures: RequestFigures = emptyFigures();
  private counting = false;
  /** An HTTP/2 server's responses are its streams, which that channel does not see. */
  private readonly http2: boolean;

  /** Starts counting (see {@link start}). */
  constructor(
    private readonly server: net.Server,
    private readonly startOf: (socket: net.Socket) => number | undefined,
  ) {
    this.http2 = isHttp2(server);
    this.start();
  }

  /** Counts from now on, adding to the figures so far (they only grow: they become counters). */
  start(): void {
    if (this.counting) return;
    this.counting = true;
    if (this.http2) this.server.on('stream', this.onStream);
    // The HTTP/1.1 fallback of an HTTP/2 server over TLS is seen here too.
    subscribe(RESPONSE_FINISH, this.onFinish);
  }

  /** An HTTP/2 stream: counted when its response has been handed on (one listener per stream). */
  private readonly onStream = (stream: ServerHttp2Stream): void => {
    const started = performance.now();
    stream.once('finish', () => {
      const status = Number(stream.sentHeaders?.[':status'] ?? 0);
      recordResponse(this.figures, status, (performance.now() - started) / 1000);
    });
  };

  private readonly onFinish = (message: unknown): void => {
    const { server, socket, response } = message as ResponseFinish;
    if (server !== this.server) return;
    const started = this.startOf(socket);
    if (started === undefined) return;
    recordResponse(this.figures, response.statusCode, (performance.now() - started) / 1000);
  };

  /** Forgets what was counted so far (the worker's own warm-up requests). */
  reset(): void {
    this.figures = emptyFigures();
  }

  /** Stops counting; the figures stay as they are (and are still reported). */
  stop(): void {
    if (!this.counting) return;
    this.counting = false;
    if (this.http2) this.server.off('stream', this.onStream);
    unsubscribe(RESPONSE_FINISH, this.onFinish);
  }
}
