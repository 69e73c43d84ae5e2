import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2Session, ServerHttp2Stream } from 'node:http2';
import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import type { ConnectionCountKind, ConnectionCounts } from '../../protocol/connections.js';
import { GrpcFront } from '../grpc-front.js';
import { isHttp2 } from '../http-protocol.js';
import { type ConnectionState, STRATEGIES } from './connection-kinds.js';
import type { ConnectionMover } from './connection-mover.js';

/** A connection as the tracker holds it: its socket, or an HTTP/2 connection's session. */
type Connection = net.Socket | Http2Session;

/**
 * Tracks every connection of a worker's server, so a drain can finish each request, answer
 * requests on kept-alive connections with `Connection: close`, and close connections only once
 * they have been idle for a while — a client that sends on a connection at the very moment it
 * is closed would see the request fail.
 *
 * The request path stays lean (it runs for every request the worker serves): one property
 * write and two counters (and the time, with metrics on), no listener per request. Idleness is
 * only looked at while draining.
 */
export class ConnectionTracker {
  private readonly connections = new Map<Connection, ConnectionState>();
  private draining = false;
  /** Draining, with idle HTTP/1.1 connections moved to the next generation rather than closed. */
  private moving = false;
  /** Connections that closed while draining: cleanly, and by an error (a reset). */
  closedDraining = 0;
  resetDraining = 0;
  /** Requests seen since the worker started. */
  requests = 0;
  /**
   * Asks clients to reconnect once a connection is this old (0: never): a response on it says
   * `Connection: close` (a canary deploy spreads kept-alive clients over both releases).
   */
  reconnectAfterMs = 0;

  /**
   * Starts tracking `server`; `onRequest` runs once per request, before the app sees it. With
   * `timing` (settable later), the arrival of each request is noted for {@link startOf}.
   */
  constructor(
    private readonly server: net.Server,
    onRequest: () => void,
    public timing = false,
  ) {
    if (server instanceof GrpcFront) {
      // Its calls are grpc-js's own: only the connections are seen (no request count).
      server.on('connection', (socket: net.Socket) => {
        this.track(socket).kind = 'grpc';
      });
      return;
    }
    const http2 = isHttp2(server);
    if (http2) this.trackHttp2(server, onRequest);
    if (server instanceof tls.Server) {
      // A TLS connection is tracked from its first byte: as its raw TCP socket while the
      // handshake runs, then as its TLS socket. A drain that only saw finished handshakes
      // would end (and the worker exit) under a client that is mid-handshake, resetting it.
      server.on('connection', (raw: net.Socket) => {
        this.track(raw).kind = 'tls-handshake';
      });
      server.on('secureConnection', (socket: tls.TLSSocket) => {
        this.handshakeDone(socket);
        // HTTP/2 by ALPN: its session is tracked instead (the server made it just before).
        if (!http2 || socket.alpnProtocol !== 'h2') this.track(socket);
      });
    } else if (!http2) {
      server.on('connection', (socket: net.Socket) => this.track(socket));
    }
    // An HTTP/2 server has `request` events only when its app listens for them (Node's
    // compatibility layer, which also serves the HTTP/1.1 fallback): a listener here would
    // turn that layer on for an app that serves `stream` events itself.
    if (http2 && server.listenerCount('request') === 0) return;
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
      if (req.httpVersionMajor === 2) return; // a stream, counted by trackHttp2

      const state = this.connections.get(req.socket) ?? this.track(req.socket);
      state.current = res;
      state.requests += 1;
      if (this.timing) state.startedAt = performance.now();
      this.requests += 1;
      if (state.handedIn) keepAliveOver(req.socket, state, server);
      if (
        (this.draining && (!this.moving || state.stays)) ||
        (this.reconnectAfterMs > 0 && Date.now() - state.openedAt >= this.reconnectAfterMs)
      ) {
        res.setHeader('Connection', 'close');
      }
      onRequest();
    });
    server.prependListener('upgrade', (req: IncomingMessage) => {
      (this.connections.get(req.socket) ?? this.track(req.socket)).kind = 'upgraded';
    });
  }

  /**
   * Tracks the sessions of an HTTP/2 server and counts their streams (a listener per stream:
   * HTTP/2 requests are streams, not responses on a socket). In a canary deploy a session
   * older than `reconnectAfterMs` is closed (GOAWAY) after the streams it has: its client
   * opens a new connection, which the kernel may give to either release.
   */
  private trackHttp2(server: net.Server, onRequest: () => void): void {
    server.on('session', (session: Http2Session) => {
      const state = this.track(session);
      state.kind = 'http2';
      state.session = session;
      // Accepted before the drain, its TLS handshake done after it began: told to go away as
      // the sessions open at the start were, or its client, never short of a stream in flight,
      // would hold the drain to the graceful timeout (test/unit/connection-tracker.test.ts).
      if (this.draining) closeSessionSoon(session);
    });
    server.prependListener('stream', (stream: ServerHttp2Stream) => {
      const state = this.connections.get(stream.session as Http2Session);
      if (state !== undefined) {
        state.streams += 1;
        state.requests += 1;
        stream.once('close', () => {
          state.streams -= 1;
        });
        if (this.reconnectAfterMs > 0 && Date.now() - state.openedAt >= this.reconnectAfterMs) {
          closeSessionSoon(state.session);
        }
      }
      this.requests += 1;
      onRequest();
    });
  }

  private track(socket: Connection): ConnectionState {
    const state: ConnectionState = {
      kind: 'http1',
      current: undefined,
      streams: 0,
      requests: 0,
      startedAt: 0,
      openedAt: Date.now(),
      idleAt: 0,
      idleRequests: -1,
      idleBytes: -1,
      stays: false,
      handedIn: false,
      parkedAt: -1,
    };
    this.connections.set(socket, state);
    socket.once('close', (hadError: boolean) => {
      // Gone from the map already: moved away, or closed at the deadline (counted there).
      if (this.connections.get(socket) !== state) return;
      this.connections.delete(socket);
      if (!this.draining) return;
      if (hadError) this.resetDraining += 1;
      else this.closedDraining += 1;
    });
    return state;
  }

  /**
   * Serves `socket` on the app's server as if it had been accepted here: a connection handed
   * in by another worker (`handedIn`: it gets the server's keep-alive time to send its next
   * request), or one of this worker's that no worker took (it stays, and is closed as a
   * drain closes connections).
   */
  adopt(socket: net.Socket, handedIn: boolean): void {
    this.server.emit('connection', socket);
    const state = this.connections.get(socket) ?? this.track(socket);
    if (!handedIn) {
      state.stays = true;
      return;
    }
    state.handedIn = true;
    const keepAliveMs = (this.server as { keepAliveTimeout?: number }).keepAliveTimeout ?? 5000;
    if (keepAliveMs > 0) socket.setTimeout(keepAliveMs);
  }

  /**
   * Offers idle HTTP/1.1 connections to `mover` (not those that stay), as many as it takes at
   * once; returns how many were taken from this worker's server. Call it while draining, as
   * offers are answered (it stops at the first it cannot offer: linear in the connections it
   * passes, not in all), and with `park` every few tens of milliseconds, which looks at every
   * connection: each idle one waiting its turn has the server's keep-alive timer stopped, as
   * that close would race the client's next request (the worker it moves to starts its own).
   */
  moveIdle(mover: ConnectionMover, park = false): number {
    let offered = 0;
    for (const [connection, state] of this.connections) {
      if (state.kind !== 'http1' || state.stays || isBusy(state)) continue;
      const socket = connection as net.Socket;
      if (mover.full) {
        if (!park) break;
        if (state.parkedAt !== state.requests) {
          state.parkedAt = state.requests;
          socket.setTimeout(0);
        }
        continue;
      }
      if (mover.offer(socket)) {
        this.connections.delete(connection);
        offered += 1;
      }
    }
    return offered;
  }

  /**
   * The handshake of `socket` is done: its raw socket is no longer a connection of its own
   * (it closes with the TLS socket). Node's TLS socket names the socket it wraps `_parent`, in
   * every Node line prefork supports (test/unit/connection-tracker.test.ts checks it).
   */
  private handshakeDone(socket: tls.TLSSocket): void {
    const raw = (socket as { _parent?: net.Socket | null })._parent;
    if (raw && this.connections.get(raw)?.kind === 'tls-handshake') this.connections.delete(raw);
  }

  /**
   * When the latest request on `socket` arrived (with timing on): the start of the response
   * being finished, as responses on a connection finish in order and clients rarely pipeline.
   */
  startOf(socket: net.Socket): number | undefined {
    return this.connections.get(socket)?.startedAt;
  }

  /** Open connections. */
  get size(): number {
    return this.connections.size;
  }

  /**
   * From now on every response says `Connection: close`, including in-flight ones whose
   * headers are not sent yet.
   */
  startDraining(moving = false): void {
    this.draining = true;
    this.moving = moving;
    for (const state of this.connections.values()) {
      STRATEGIES[state.kind].onDrainStart(state, moving);
    }
  }

  /**
   * Open connections by kind, HTTP/1.1 ones as busy (a response unfinished) or idle, with the
   * streams open on HTTP/2 sessions: for heartbeats (once a heartbeat, so the request path
   * pays nothing for it) and the drain's log lines.
   */
  counts(): ConnectionCounts {
    const byKind: Partial<Record<ConnectionCountKind, number>> = {};
    let streams = 0;
    for (const state of this.connections.values()) {
      const kind = COUNT_KIND[state.kind] ?? (isBusy(state) ? 'http1_busy' : 'http1_idle');
      byKind[kind] = (byKind[kind] ?? 0) + 1;
      streams += state.streams;
    }
    return { byKind, streams };
  }

  /**
   * Closes connections with no request in flight that have been idle for `idleMs`: seen idle
   * this long ago, with no request and no byte read on them since. (Call it every few tens of
   * milliseconds while draining; a connection idle before the drain counts from the first look.)
   */
  closeIdle(idleMs: number, now: number = Date.now()): void {
    for (const [connection, state] of this.connections) {
      if (!STRATEGIES[state.kind].closesWhenIdle) continue;
      // Moving: an HTTP/1.1 connection is offered once idle (moveIdle), never closed as idle.
      if (this.moving && state.kind === 'http1' && !state.stays) continue;
      const socket = connection as net.Socket; // only sockets close when idle
      const busy = isBusy(state);
      if (busy || state.requests !== state.idleRequests || socket.bytesRead !== state.idleBytes) {
        state.idleRequests = busy ? -1 : state.requests;
        state.idleBytes = socket.bytesRead;
        state.idleAt = now;
      } else if (
        now - state.idleAt >=
        (socket.bytesRead === 0 ? Math.max(FIRST_BYTES_MS, idleMs) : idleMs)
      ) {
        closeIfStillIdle(socket, state, this.connections);
      }
    }
  }

  /**
   * Closes every connection, in flight or not (the graceful timeout has passed); returns how
   * many there were.
   */
  destroyAll(): number {
    const open = [...this.connections.keys()];
    this.connections.clear();
    for (const socket of open) socket.destroy();
    return open.length;
  }
}

/**
 * The first request on a handed-in connection came: the keep-alive timer set when it arrived
 * stops (the server's own timeout, if it has one, applies again), as Node's server does.
 */
function keepAliveOver(socket: net.Socket, state: ConnectionState, server: net.Server): void {
  state.handedIn = false;
  socket.setTimeout((server as { timeout?: number }).timeout ?? 0);
}

/** How each kind is counted; HTTP/1.1 ones by whether they are busy. */
const COUNT_KIND: Partial<Record<ConnectionState['kind'], ConnectionCountKind>> = {
  'tls-handshake': 'tls_handshake',
  upgraded: 'upgraded',
  http2: 'http2',
  grpc: 'grpc',
};

/**
 * Closes `session` (GOAWAY, its open streams finish) once the current nghttp2 callback has
 * returned. Closing it from inside its own `stream` event corrupts the heap in Node 20's
 * HTTP/2 code (`corrupted size vs. prev_size`, then SIGABRT), measured under a canary
 * deploy's load (test/integration/http2.test.ts); a timer or an immediate is where grpc-js
 * closes its sessions too.
 */
function closeSessionSoon(session: Http2Session | undefined): void {
  if (session === undefined || session.closed) return;
  setImmediate(() => {
    if (!session.closed && !session.destroyed) session.close();
  });
}

/**
 * How long a drain waits for the first bytes of a connection on which none came yet, before
 * closing it as idle. Its client connected to send a request, and under a reconnect storm it
 * may be slow to send it: closing such connections after the usual idle time reset clients
 * (`socket hang up`) whose request was on its way (`npm run bench:storm`, all at once). A
 * connection opened and never used (a browser's preconnect) holds the drain this long.
 */
const FIRST_BYTES_MS = 2000;

/** The drain must wait for the connection, as its kind's strategy says. */
function isBusy(state: ConnectionState): boolean {
  return STRATEGIES[state.kind].isBusy(state);
}

/**
 * Closes an idle connection after this turn of the event loop has read its socket. A timer
 * can run before the reads of its turn: a worker that was stopped or starved of CPU while a
 * client sent its next request finds the request still unread when its drain timer fires, and
 * closing then would reset it (ECONNRESET: a socket closed with unread data sends RST). An
 * immediate runs after the poll phase, so by then the request has been read, and counts.
 */
function closeIfStillIdle(
  socket: net.Socket,
  state: ConnectionState,
  connections: Map<Connection, ConnectionState>,
): void {
  const { requests } = state;
  const bytes = socket.bytesRead;
  setImmediate(() => {
    // Gone from the map: closed, or a handshake that finished (its TLS socket is tracked now).
    if (socket.destroyed || connections.get(socket) !== state || isBusy(state)) return;
    if (state.requests === requests && socket.bytesRead === bytes) socket.destroy();
  });
}
