import {
  type ConnectionCountKind,
  type ConnectionCounts,
  connectionTotal,
} from '../protocol/connections.js';
import type { MoveCounts } from '../protocol/moves.js';

/** How each kind of connection is named for people. */
const KIND_NAMES: Record<ConnectionCountKind, string> = {
  http1_busy: 'HTTP/1.1 busy',
  http1_idle: 'HTTP/1.1 idle',
  upgraded: 'upgraded (WebSocket)',
  http2: 'HTTP/2',
  grpc: 'gRPC',
  tls_handshake: 'in TLS handshake',
};

/**
 * `12 (HTTP/1.1 busy 2, HTTP/1.1 idle 9, HTTP/2 1 with 3 streams)`: the total and each kind
 * with any open, or `0`.
 */
export function describeConnections(counts: ConnectionCounts): string {
  const total = connectionTotal(counts);
  if (total === 0) return '0';
  const parts = (Object.keys(KIND_NAMES) as ConnectionCountKind[]).flatMap((kind) => {
    const n = counts.byKind[kind] ?? 0;
    if (n === 0) return [];
    const streams = kind === 'http2' ? ` with ${counts.streams} streams` : '';
    return [`${KIND_NAMES[kind]} ${n}${streams}`];
  });
  return `${total} (${parts.join(', ')})`;
}

/** `3 connections were still open at the graceful timeout (30 s) and closed`. */
export function describeClosedAtDeadline(closed: number, gracefulTimeoutS: number): string {
  const were = closed === 1 ? 'connection was' : 'connections were';
  return `${closed} ${were} still open at the graceful timeout (${gracefulTimeoutS} s) and closed`;
}

/**
 * `1998 moved, 2 closed cleanly`: what drains did with their connections, each outcome that
 * happened (docs/connection-moves.md); empty when none did.
 */
export function describeDrained(drained: MoveCounts): string {
  const parts: [number, string][] = [
    [drained.moved, 'moved'],
    [drained.refused, 'refused by the next generation (closed here)'],
    [drained.lost, 'lost on the way'],
    [drained.closed, 'closed cleanly'],
    [drained.reset, 'reset'],
  ];
  return parts
    .filter(([n]) => n > 0)
    .map(([n, what]) => `${n} ${what}`)
    .join(', ');
}
