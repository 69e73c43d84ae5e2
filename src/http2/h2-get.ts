import http2 from 'node:http2';
import type { Duplex } from 'node:stream';

/** How {@link h2Get} sends its request. */
export interface H2GetOptions {
  headers?: Record<string, string>;
  /** Fails the request when no data moved for this long; none when undefined. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * An HTTP/2 client session to `authority` (`http://` for h2c with prior knowledge, `https://`
 * for ALPN h2, the certificate not checked: see `checkHealthOnce`), over `connect` when given
 * (a Unix socket). Its errors fail the requests on it, so the session itself reports none.
 */
export function openH2(authority: string, connect?: () => Duplex): http2.ClientHttp2Session {
  const session = http2.connect(authority, {
    rejectUnauthorized: false,
    ...(connect && { createConnection: connect }),
  });
  session.on('error', () => {});
  return session;
}

/**
 * GETs `path` on `session`, reading the answer to its end. Resolves with the status; rejects
 * when the stream fails, is aborted through `signal`, or `timeoutMs` (when given) passes first.
 */
export function h2Get(
  session: http2.ClientHttp2Session,
  path: string,
  options: H2GetOptions = {},
): Promise<number> {
  return new Promise((resolve, reject) => {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(
        { ':method': 'GET', ':path': path, ...options.headers },
        { endStream: true, ...(options.signal && { signal: options.signal }) },
      );
    } catch (error) {
      reject(error);
      return;
    }
    let status = 0;
    stream.once('response', (headers) => {
      status = Number(headers[':status']);
    });
    stream.resume();
    stream.once('end', () => resolve(status));
    stream.once('error', reject);
    stream.once('close', () => {
      if (status === 0 || !stream.readableEnded) {
        reject(new Error(`the stream closed without an answer (code ${stream.rstCode})`));
      }
    });
    if (options.timeoutMs !== undefined) {
      const ms = Math.max(1, options.timeoutMs);
      stream.setTimeout(ms, () => stream.destroy(new Error(`no answer within ${ms} ms`)));
    }
  });
}
