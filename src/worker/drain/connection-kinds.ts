import type { ServerResponse } from 'node:http';
import type { Http2Session } from 'node:http2';

/** The kinds of client connection a worker tells apart while it drains. */
export type ConnectionKind = 'tls-handshake' | 'http1' | 'upgraded' | 'http2' | 'grpc';

/** What the tracker knows of one client connection. */
export interface ConnectionState {
  kind: ConnectionKind;
  /** The latest response on this connection (responses finish in order, so it is the last). */
  current: ServerResponse | undefined;
  /** Requests seen on it: a change between two looks means it was busy in between. */
  requests: number;
  /** When its latest request arrived (`performance.now()`), when timing is on. */
  startedAt: number;
  /** An HTTP/2 connection's session, and its streams open now. */
  session?: Http2Session;
  streams: number;
  /** When it was accepted (`Date.now()`), for the canary's reconnects. */
  openedAt: number;
  /**
   * While draining: the request count and bytes read when the connection was first seen idle,
   * and when.
   */
  idleAt: number;
  idleRequests: number;
  idleBytes: number;
  /**
   * Never offered to another worker: it came back refused, and is served here until it closes
   * (an HTTP/1.1 connection only; docs/connection-moves.md).
   */
  stays: boolean;
  /** Handed to this worker by another and no request seen on it yet (its keep-alive timer runs). */
  handedIn: boolean;
  /**
   * Waiting its turn to move, its keep-alive timer stopped when it had seen this many requests
   * (-1: not parked). A request since re-arms the server's timer, so it is parked again.
   */
  parkedAt: number;
}

/**
 * How a drain treats one kind of connection: whether it is busy (a drain waits for it),
 * whether it may be closed once idle, and what it is told when the drain starts. One strategy
 * per kind; a new kind (HTTP/2 sessions, issue 25) is a new entry here.
 */
export interface ConnectionStrategy {
  /** The drain waits for a busy connection to finish. */
  isBusy(state: ConnectionState): boolean;
  /** An idle connection of this kind may be closed once it has stayed quiet (HTTP/1.1 only). */
  closesWhenIdle: boolean;
  /**
   * The drain starts: what the connection is told now. `moving`: its idle HTTP/1.1 connections
   * will be moved, so those keep their keep-alive.
   */
  onDrainStart(state: ConnectionState, moving: boolean): void;
}

/**
 * HTTP/1.1: busy while a response is unfinished. Told `Connection: close` on every response,
 * unless the connection will be moved once idle (it keeps its keep-alive then).
 */
const http1: ConnectionStrategy = {
  isBusy: (state) => state.current !== undefined && !state.current.writableFinished,
  closesWhenIdle: true,
  // In-flight responses whose headers are not sent yet say `Connection: close` too.
  onDrainStart: ({ current }, moving) => {
    if (moving) return;
    if (current !== undefined && !current.headersSent) current.setHeader('Connection', 'close');
  },
};

/**
 * A TCP connection to an HTTPS server whose TLS handshake has not finished: the raw socket,
 * until the server's `secureConnection` hands over the TLS socket. Not busy (no request can be
 * in flight yet), and closed like an idle HTTP/1.1 connection once no byte has come in for a
 * while; a client that is mid-handshake sends its next flight within a round trip, so its
 * bytes keep the connection, and the drain, alive until its request is answered.
 */
const tlsHandshake: ConnectionStrategy = {
  isBusy: () => false,
  closesWhenIdle: true,
  onDrainStart: () => {},
};

/**
 * Handed to an `upgrade` handler (WebSocket, a tunnel): never idle as far as prefork knows, so
 * the drain waits for it and closes it only at the graceful timeout.
 */
const upgraded: ConnectionStrategy = {
  isBusy: () => true,
  closesWhenIdle: false,
  onDrainStart: () => {},
};

/**
 * An HTTP/2 session: busy while a stream is open. The drain closes it the one way Node allows:
 * `session.close()` sends a GOAWAY with the last stream id it processed, lets the open streams
 * finish, then ends the connection. A stream the client sent in that instant, above that id,
 * is not processed and the client may retry it (RFC 9113 §6.8). Node cannot send the shutdown
 * notice RFC 9113 suggests first (GOAWAY with 2^31-1, a PING, then the real one): its
 * `goaway()` makes a final GOAWAY, after which nghttp2 ignores new streams (docs/http2.md).
 */
const http2Session: ConnectionStrategy = {
  isBusy: (state) => state.streams > 0,
  closesWhenIdle: false,
  onDrainStart: ({ session }) => session?.close(),
};

/**
 * A connection handed to a grpc-js server, whose sessions and calls grpc-js keeps to itself:
 * busy until it closes. The drain asks grpc-js to close its sessions by GOAWAY
 * (`GrpcFront.drainSessions`), the way an HTTP/2 session is closed above; each connection
 * closes once its calls in flight have finished.
 */
const grpc: ConnectionStrategy = {
  isBusy: () => true,
  closesWhenIdle: false,
  onDrainStart: () => {},
};

/** Each kind's strategy. */
export const STRATEGIES: Record<ConnectionKind, ConnectionStrategy> = {
  'tls-handshake': tlsHandshake,
  http1,
  upgraded,
  http2: http2Session,
  grpc,
};
