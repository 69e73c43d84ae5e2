import http from 'node:http';
import http2 from 'node:http2';
import type net from 'node:net';
import tls from 'node:tls';
import type { HttpProtocol } from '../protocol/ipc.js';
import { GrpcFront } from './grpc-front.js';

/** Node's HTTP/2 server classes, which `node:http2` does not export by name. */
type Constructor = abstract new (...args: never[]) => object;
let classes: { plain: Constructor; secure: Constructor } | undefined;

/**
 * What `server` speaks (`HTTP_PROTOCOLS`): `h2c` for an `http2.createServer()`, `h2` for an
 * `http2.createSecureServer()` (ALPN; HTTP/1.1 too when it allows it), `grpc` for a grpc-js
 * server, else `http/1.1`.
 */
export function httpProtocolOf(server: net.Server): HttpProtocol {
  if (server instanceof GrpcFront) return 'grpc';
  classes ??= {
    plain: http2.createServer().constructor as Constructor,
    secure: http2.createSecureServer().constructor as Constructor,
  };
  if (server instanceof classes.secure) return 'h2';
  if (server instanceof classes.plain) return 'h2c';
  return 'http/1.1';
}

/**
 * `server` is one of Node's HTTP/2 servers (its requests arrive as streams of sessions it
 * emits); a grpc-js server's HTTP/2 server is its own, out of sight.
 */
export function isHttp2(server: net.Server): boolean {
  const http = httpProtocolOf(server);
  return http === 'h2c' || http === 'h2';
}

/** Whoever connects to `server` speaks TLS first. */
export function isTls(server: net.Server): boolean {
  return server instanceof tls.Server || (server instanceof GrpcFront && server.secure);
}

/**
 * `server`'s idle connections can be moved to another worker: it is Node's plain HTTP/1.1
 * server (`http.Server`), whose connections carry no state outside the socket between two
 * requests. A TLS connection's session keys live in this process; HTTP/2 sessions are drained
 * by GOAWAY (docs/connection-moves.md).
 */
export function canMoveConnections(server: net.Server): boolean {
  return server instanceof http.Server && !isTls(server) && httpProtocolOf(server) === 'http/1.1';
}
