import http2 from 'node:http2';
import type net from 'node:net';
import type { HttpProtocol } from '../protocol/ipc.js';

/** Node's HTTP/2 server classes, which `node:http2` does not export by name. */
type Constructor = abstract new (...args: never[]) => object;
let classes: { plain: Constructor; secure: Constructor } | undefined;

/**
 * What `server` speaks (`HTTP_PROTOCOLS`): `h2c` for an `http2.createServer()`, `h2` for an
 * `http2.createSecureServer()` (ALPN; HTTP/1.1 too when it allows it), else `http/1.1`.
 */
export function httpProtocolOf(server: net.Server): HttpProtocol {
  classes ??= {
    plain: http2.createServer().constructor as Constructor,
    secure: http2.createSecureServer().constructor as Constructor,
  };
  if (server instanceof classes.secure) return 'h2';
  if (server instanceof classes.plain) return 'h2c';
  return 'http/1.1';
}

/** `server` speaks HTTP/2 (its requests arrive as streams of sessions). */
export function isHttp2(server: net.Server): boolean {
  return httpProtocolOf(server) !== 'http/1.1';
}
