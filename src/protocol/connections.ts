/**
 * What a worker's open connections are, as it counts them for its master (heartbeats), and as
 * `status` and `/metrics` show them: by kind, with an HTTP/1.1 connection busy while a response
 * is unfinished and idle between requests, and an HTTP/2 session's open streams counted apart.
 */
import * as v from 'valibot';

/** The kinds a worker's open connections are counted by (the `kind` label of `/metrics`). */
export const CONNECTION_COUNT_KINDS = [
  'http1_busy',
  'http1_idle',
  'upgraded',
  'http2',
  'grpc',
  'tls_handshake',
] as const;
export type ConnectionCountKind = (typeof CONNECTION_COUNT_KINDS)[number];

const whole = v.pipe(v.number(), v.integer(), v.minValue(0));

/** Open connections by kind, and the streams open on the HTTP/2 ones. */
export const ConnectionCountsSchema = v.object({
  byKind: v.pipe(
    v.record(v.picklist(CONNECTION_COUNT_KINDS), whole),
    v.transform((counts) => counts as Partial<Record<ConnectionCountKind, number>>),
  ),
  streams: whole,
});
export type ConnectionCounts = v.InferOutput<typeof ConnectionCountsSchema>;

/** No connection open. */
export function noConnections(): ConnectionCounts {
  return { byKind: {}, streams: 0 };
}

/** `a` and `b` together. */
export function addConnections(a: ConnectionCounts, b: ConnectionCounts): ConnectionCounts {
  const byKind = { ...a.byKind };
  for (const kind of CONNECTION_COUNT_KINDS) {
    const n = b.byKind[kind];
    if (n !== undefined) byKind[kind] = (byKind[kind] ?? 0) + n;
  }
  return { byKind, streams: a.streams + b.streams };
}

/** Every open connection. */
export function connectionTotal(counts: ConnectionCounts): number {
  return CONNECTION_COUNT_KINDS.reduce((sum, kind) => sum + (counts.byKind[kind] ?? 0), 0);
}
