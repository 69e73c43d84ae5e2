import { isIP } from 'node:net';
import { UsageError } from '../errors/index.js';

/** A listen address: TCP host and port, or a Unix socket path. */
export type Bind =
  | { kind: 'tcp'; host: string | undefined; port: number; name: string }
  | { kind: 'unix'; path: string; name: string };

const HELP = 'use HOST:PORT, :PORT, [::1]:PORT or unix:/path';

/**
 * Parses a `--bind` value. The bind's `name` is its canonical spelling, used to match
 * inherited sockets against the binds a new master still has.
 */
export function parseBind(value: string): Bind {
  const text = value.trim();
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (!path.startsWith('/')) {
      throw new UsageError(`bad bind "${value}": a unix socket path must be absolute (${HELP})`);
    }
    return { kind: 'unix', path, name: `unix:${path}` };
  }
  let host: string | undefined;
  let portText: string;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (bracketed) {
    host = bracketed[1];
    portText = bracketed[2] ?? '';
    if (isIP(host ?? '') !== 6) {
      throw new UsageError(`bad bind "${value}": "${host}" is not an IPv6 address (${HELP})`);
    }
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) throw new UsageError(`bad bind "${value}": no port (${HELP})`);
    host = text.slice(0, colon) || undefined;
    portText = text.slice(colon + 1);
    if (host?.includes(':')) {
      throw new UsageError(`bad bind "${value}": put an IPv6 address in brackets (${HELP})`);
    }
  }
  if (!/^\d+$/.test(portText) || Number(portText) > 65535) {
    throw new UsageError(`bad bind "${value}": "${portText}" is not a port 0-65535 (${HELP})`);
  }
  const port = Number(portText);
  const name =
    host === undefined ? `:${port}` : isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  return { kind: 'tcp', host, port, name };
}

/** The URL-ish address of a bound TCP socket, for logs and health checks. */
export function formatAddress(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
