import { createRequire } from 'node:module';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { pathToFileURL } from 'node:url';

/** What grpc-js's `Server.createConnectionInjector()` returns (grpc-js 1.11 and later). */
interface ConnectionInjector {
  injectConnection(connection: Duplex): void;
  drain(graceTimeMs: number): void;
  destroy(): void;
}

/** The part of a grpc-js `Server` prefork uses: it is recognised by these methods. */
interface GrpcServer {
  addService: (...args: never[]) => unknown;
  createConnectionInjector: (credentials: unknown) => ConnectionInjector;
}

/** grpc-js `ServerCredentials`, as far as prefork reads them. */
interface Credentials {
  _isSecure?: () => boolean;
}

/** `value` looks like a grpc-js `Server` (it has `addService` and `bindAsync`). */
export function isGrpcServer(value: unknown): value is Partial<GrpcServer> {
  const server = value as Partial<GrpcServer & { bindAsync: unknown }> | null;
  return (
    typeof server === 'object' &&
    server !== null &&
    typeof server.addService === 'function' &&
    typeof server.bindAsync === 'function'
  );
}

/**
 * A grpc-js server in front of prefork's sockets: a plain `net.Server` that listens on them
 * (and takes the connections a private endpoint hands it) and injects each connection into the
 * grpc-js server, which speaks HTTP/2 on it — TLS first with secure credentials.
 */
export class GrpcFront extends net.Server {
  /** When the drain's graceful timeout ends (`Date.now()` ms), once a drain began. */
  private drainDeadline: number | undefined;
  /** When grpc-js was last asked to drain. */
  private drainAskedAt = 0;

  constructor(
    private readonly injector: ConnectionInjector,
    /** The credentials are secure: the connections speak TLS (h2 by ALPN). */
    readonly secure: boolean,
  ) {
    super((socket) => injector.injectConnection(socket));
  }

  /**
   * Sends each session a GOAWAY (grpc-js closes them with `session.close()`: the calls in
   * flight finish, a call the client sent past the GOAWAY is refused and grpc-js clients retry
   * it transparently), and cancels what is still open after `graceMs`.
   */
  drainSessions(graceMs: number): void {
    this.drainAskedAt = Date.now();
    this.drainDeadline = this.drainAskedAt + graceMs;
    this.injector.drain(graceMs);
  }

  /**
   * Over TLS, asks grpc-js again (at most every {@link REDRAIN_MS}) to close its sessions: a
   * connection accepted before the drain whose handshake finished after it has a session
   * grpc-js made since, which the first ask did not reach and whose client, never short of a
   * call, would hold the drain to the graceful timeout. grpc-js keeps its sessions to itself,
   * so prefork cannot tell it one by one (as it does its own HTTP/2 sessions); asking again
   * leaves the closed ones as they are, and each ask cancels what is left at the same deadline.
   * Without TLS a session is made as its connection is injected, before any drain.
   */
  drainLateSessions(now: number = Date.now()): void {
    if (!this.secure || this.drainDeadline === undefined) return;
    if (now - this.drainAskedAt < REDRAIN_MS) return;
    this.drainAskedAt = now;
    this.injector.drain(Math.max(0, this.drainDeadline - now));
  }
}

/** How often a drain over TLS asks grpc-js again to close the sessions made since. */
const REDRAIN_MS = 250;

/**
 * Puts `server`, a grpc-js server the release exported unbound, in front of prefork's sockets,
 * with the release's `credentials` export, or without TLS (`ServerCredentials.createInsecure()`
 * of the release's own grpc-js: its class is what grpc-js checks credentials against).
 */
export async function grpcFront(
  server: Partial<GrpcServer>,
  entry: string,
  credentials: unknown,
): Promise<GrpcFront> {
  if (typeof server.createConnectionInjector !== 'function') {
    throw new Error(
      `${entry} exports a grpc-js Server without createConnectionInjector(): prefork serves grpc-js 1.11 or later (npm install @grpc/grpc-js@latest)`,
    );
  }
  const creds = credentials ?? (await insecureCredentials(entry));
  const injector = server.createConnectionInjector(creds);
  const secure = (creds as Credentials)._isSecure?.() === true;
  return new GrpcFront(injector, secure);
}

async function insecureCredentials(entry: string): Promise<unknown> {
  let resolved: string;
  try {
    resolved = createRequire(entry).resolve('@grpc/grpc-js');
  } catch {
    throw new Error(
      `${entry} exports a grpc-js Server, but @grpc/grpc-js cannot be found from it: install it in the release, or export the credentials to serve with (export const credentials = grpc.ServerCredentials.createInsecure())`,
    );
  }
  const grpc = (await import(pathToFileURL(resolved).href)) as {
    default?: { ServerCredentials: { createInsecure(): unknown } };
    ServerCredentials?: { createInsecure(): unknown };
  };
  const ServerCredentials = grpc.ServerCredentials ?? grpc.default?.ServerCredentials;
  if (ServerCredentials === undefined) {
    throw new Error(`${resolved} has no ServerCredentials: is it @grpc/grpc-js?`);
  }
  return ServerCredentials.createInsecure();
}
