import type { IncomingMessage, ServerResponse } from 'node:http';
import type net from 'node:net';
import tls from 'node:tls';

/** What the tracker knows of one client connection. */
interface ConnectionState {
  /** Responses not finished yet on this connection. */
  active: Set<ServerResponse>;
  /** When the last response finished (or the connection was accepted). */
  idleSince: number;
  /** Handed over to an `upgrade` handler (WebSocket): never idle, closed only when forced. */
  upgraded: boolean;
}

/**
 * Tracks every connection and in-flight request of a worker's server, so a drain can finish
 * each request, answer requests on kept-alive connections with `Connection: close`, and close
 * connections only once they have been idle for a while — a client that sends on a connection
 * at the very moment it is closed would see the request fail.
 */
export class ConnectionTracker {
  private readonly connections = new Map<net.Socket, ConnectionState>();
  private draining = false;
  /** Requests seen since the worker started. */
  requests = 0;

  /** Starts tracking `server`; `onRequest` runs once per request, before the app sees it. */
  constructor(server: net.Server, onRequest: () => void) {
    const event = server instanceof tls.Server ? 'secureConnection' : 'connection';
    server.on(event, (socket: net.Socket) => this.track(socket));
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
      const state = this.track(req.socket);
      state.active.add(res);
      this.requests += 1;
      if (this.draining) res.setHeader('Connection', 'close');
      res.once('close', () => {
        state.active.delete(res);
        state.idleSince = Date.now();
      });
      onRequest();
    });
    server.prependListener('upgrade', (req: IncomingMessage) => {
      this.track(req.socket).upgraded = true;
    });
  }

  private track(socket: net.Socket): ConnectionState {
    let state = this.connections.get(socket);
    if (state === undefined) {
      state = { active: new Set(), idleSince: Date.now(), upgraded: false };
      this.connections.set(socket, state);
      socket.once('close', () => this.connections.delete(socket));
    }
    return state;
  }

  /** Open connections. */
  get size(): number {
    return this.connections.size;
  }

  /**
   * From now on every response says `Connection: close`, including in-flight ones whose
   * headers are not sent yet.
   */
  startDraining(): void {
    this.draining = true;
    for (const state of this.connections.values()) {
      for (const res of state.active) if (!res.headersSent) res.setHeader('Connection', 'close');
    }
  }

  /** Closes connections with no request in flight that have been idle for `idleMs`. */
  closeIdle(idleMs: number, now: number = Date.now()): void {
    for (const [socket, state] of this.connections) {
      if (state.active.size === 0 && !state.upgraded && now - state.idleSince >= idleMs) {
        socket.destroy();
      }
    }
  }

  /** Closes every connection, in flight or not (the graceful timeout has passed). */
  destroyAll(): void {
    for (const socket of this.connections.keys()) socket.destroy();
  }
}
