/**
 * Moving idle HTTP/1.1 connections to the next generation (SPEC §4, §16; docs/connection-moves.md):
 * the messages that carry a connection's fd from a draining worker through its master (and,
 * during an upgrade, the other master) to a serving worker, and the answers that come back.
 * The same two messages serve every hop (worker → master, master → master, master → worker),
 * on Node's IPC channels (JSON serialization), the fd passed as the message's handle.
 */
import * as v from 'valibot';

/**
 * 1: `conn` and `conn-answer` on every hop, `peer-hello` between the two masters of an
 * upgrade. A master moves connections only to a peer that said hello with a version it reads.
 */
export const MOVES_PROTOCOL = 1;

/**
 * How long a connection may take to reach a worker that takes it (`Date.now()` ms after the
 * offer). Past it, every hop refuses it: a receiver never takes a connection after its
 * `expires`, so a hop that has had no answer by then knows that no one took it.
 */
export const MOVE_EXPIRES_MS = 5000;
/**
 * How long past `expires` a hop waits for an answer before it decides: the receiver's answer
 * (sent before `expires`) has this long to travel back through each hop.
 */
export const MOVE_ANSWER_MARGIN_MS = 1000;

/** A connection, its fd as the message's handle; `id` is the sender's, `expires` the origin's. */
export const ConnMessageSchema = v.object({
  type: v.literal('conn'),
  id: v.pipe(v.number(), v.integer(), v.minValue(1)),
  expires: v.number(),
});
export type ConnMessage = v.InferOutput<typeof ConnMessageSchema>;

/**
 * What became of connection `id`: `taken` (a worker serves it now: the sender closes its copy
 * of the fd), `refused` (no worker took it, and none will: the origin serves it again and
 * closes it as safely as HTTP/1.1 allows), or `lost` (no answer came, or the process it went to
 * died: the origin closes its copy, and the connection lives on only if someone took it).
 */
export const MOVE_OUTCOMES = ['taken', 'refused', 'lost'] as const;
export type MoveOutcome = (typeof MOVE_OUTCOMES)[number];

export const ConnAnswerSchema = v.object({
  type: v.literal('conn-answer'),
  id: v.pipe(v.number(), v.integer(), v.minValue(1)),
  outcome: v.picklist(MOVE_OUTCOMES),
});
export type ConnAnswer = v.InferOutput<typeof ConnAnswerSchema>;

/** A master tells the other master of an upgrade that it moves connections, at this version. */
export const PeerHelloSchema = v.object({
  type: v.literal('peer-hello'),
  version: v.pipe(v.number(), v.integer(), v.minValue(1)),
});

/** Every message between the two masters of an upgrade, validated as it arrives. */
export const PeerMessageSchema = v.variant('type', [
  ConnMessageSchema,
  ConnAnswerSchema,
  PeerHelloSchema,
]);
export type PeerMessage = v.InferOutput<typeof PeerMessageSchema>;

/** The other master of an upgrade, on the IPC channel between them (parent or child). */
export interface PeerLink {
  readonly pid: number;
  /** Sends a message, with a connection's handle; false when the channel is closed. */
  send(message: PeerMessage, handle?: unknown): boolean;
}

/** What a master does with its IPC channel to the other master of an upgrade. */
export interface PeerHooks {
  /** The channel is up. */
  onLink(link: PeerLink): void;
  onMessage(raw: unknown, handle: unknown): void;
  /** The channel closed (the other master exited). */
  onGone(): void;
}

/** What a draining worker's connections came to (heartbeats, `status`, `/metrics`). */
export const MoveCountsSchema = v.object({
  /** Taken by a worker of the next generation. */
  moved: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** Refused by every hop, served here again, then closed. */
  refused: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** Sent away with no answer back (a process died on the way). */
  lost: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** Closed cleanly during the drain: by the client, after `Connection: close`, or once quiet. */
  closed: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** Closed during the drain by an error on it (the client reset it, or a write failed). */
  reset: v.pipe(v.number(), v.integer(), v.minValue(0)),
});
export type MoveCounts = v.InferOutput<typeof MoveCountsSchema>;

/** The outcomes a drain counts (`MoveCounts`' keys, the `outcome` label of `/metrics`). */
export const MOVE_COUNT_OUTCOMES = ['moved', 'refused', 'lost', 'closed', 'reset'] as const;

/** No connection moved or closed yet. */
export function noMoves(): MoveCounts {
  return { moved: 0, refused: 0, lost: 0, closed: 0, reset: 0 };
}

/** What `a` counts beyond `b` (each at least 0): a drain's counts since `b` was read. */
export function movesSince(a: MoveCounts, b: MoveCounts): MoveCounts {
  const since = noMoves();
  for (const outcome of MOVE_COUNT_OUTCOMES) since[outcome] = Math.max(0, a[outcome] - b[outcome]);
  return since;
}

/** `a` and `b` together. */
export function addMoves(a: MoveCounts, b: MoveCounts): MoveCounts {
  const sum = noMoves();
  for (const outcome of MOVE_COUNT_OUTCOMES) sum[outcome] = a[outcome] + b[outcome];
  return sum;
}
