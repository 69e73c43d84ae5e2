import http2 from 'node:http2';
import { performance } from 'node:perf_hooks';

/** What an HTTP/2 client pool saw. */
export interface H2Result {
  /** Responses, by the release that answered (the body's `release`). */
  byRelease: Record<string, number>;
  /** Streams the server refused unprocessed (REFUSED_STREAM, or above a GOAWAY's last id): retried. */
  refused: number;
  /** GOAWAY frames received, by error code. */
  goaways: Record<string, number>;
  /** Requests that failed in any other way (the first few, with the time). */
  failed: number;
  errors: string[];
  /** Sessions opened. */
  sessions: number;
  /** With `timed`: each answered stream's [`performance.now()` at its answer, latency ms]. */
  timings: [number, number][];
}

export interface H2Pool {
  result: H2Result;
  /** Responses so far. */
  count(): number;
  /** Stops sending, waits for the streams in flight, closes every session. */
  stop(): Promise<H2Result>;
}

/** Options of {@link startH2Clients}. */
export interface H2Options {
  /** Client connections, each with `streams` requests in flight at all times. */
  connections: number;
  streams: number;
  /** `https:` authorities: the certificate is not checked. */
  path?: string;
  /** Record each answered stream's latency (`timings`). */
  timed?: boolean;
}

/**
 * HTTP/2 clients as browsers and gRPC channels behave: each connection keeps `streams`
 * requests in flight; on a GOAWAY no new stream goes to that connection (Node's client
 * closes it), new ones go to a fresh connection; a stream the server did not process
 * (REFUSED_STREAM, RFC 9113 §8.7) is retried and counted. Any other failure is a failure.
 */
export function startH2Clients(authority: string, options: H2Options): H2Pool {
  const result: H2Result = {
    byRelease: {},
    refused: 0,
    goaways: {},
    failed: 0,
    errors: [],
    sessions: 0,
    timings: [],
  };
  let stopped = false;
  const lanes: Promise<void>[] = [];
  const path = options.path ?? '/';
  const fail = (what: string) => {
    result.failed += 1;
    if (result.errors.length < 20) result.errors.push(`${new Date().toISOString()} ${what}`);
  };

  const open = (): http2.ClientHttp2Session => {
    result.sessions += 1;
    const session = http2.connect(authority, { rejectUnauthorized: false });
    session.on('goaway', (code) => {
      result.goaways[code] = (result.goaways[code] ?? 0) + 1;
    });
    session.on('error', () => {}); // seen through the streams
    return session;
  };

  /** One stream: the release that answered, 'refused' (retry), or a thrown failure. */
  const once = (session: http2.ClientHttp2Session): Promise<string> =>
    new Promise((resolve, reject) => {
      const stream = session.request({ ':path': path });
      let body = '';
      let status = 0;
      stream.setEncoding('utf8');
      stream.on('response', (headers) => {
        status = Number(headers[':status']);
      });
      stream.on('data', (chunk: string) => {
        body += chunk;
      });
      stream.on('end', () => {
        if (status !== 200) return reject(new Error(`status ${status}: ${body.slice(0, 100)}`));
        try {
          resolve(String((JSON.parse(body) as { release: unknown }).release));
        } catch {
          reject(new Error(`not JSON: ${body.slice(0, 100)}`));
        }
      });
      stream.on('error', (error: NodeJS.ErrnoException) => {
        if (stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM) resolve('refused');
        else reject(new Error(`${error.code ?? ''} ${error.message} (rst ${stream.rstCode})`));
      });
      stream.end();
    });

  const connection = async (): Promise<void> => {
    let session = open();
    const usable = () => !session.closed && !session.destroyed;
    const lane = async (): Promise<void> => {
      while (!stopped) {
        if (!usable()) session = open();
        try {
          const started = performance.now();
          const release = await once(session);
          if (options.timed && release !== 'refused') {
            const now = performance.now();
            result.timings.push([now, now - started]);
          }
          if (release === 'refused') result.refused += 1;
          else result.byRelease[release] = (result.byRelease[release] ?? 0) + 1;
        } catch (error) {
          fail((error as Error).message);
          // After a failure the connection is likely gone: a new one, not a hot loop.
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
    };
    await Promise.all(Array.from({ length: options.streams }, lane));
    session.close();
  };
  for (let i = 0; i < options.connections; i += 1) lanes.push(connection());

  return {
    result,
    count: () => Object.values(result.byRelease).reduce((a, b) => a + b, 0),
    async stop() {
      stopped = true;
      await Promise.all(lanes);
      return result;
    },
  };
}
