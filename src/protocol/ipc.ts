/**
 * Master ⇄ worker IPC: what a master tells a worker when it spawns it, and the messages on
 * their channel (JSON serialization) each way.
 */
import * as v from 'valibot';
import { ConnectionCountsSchema } from './connections.js';
import { LATENCY_BOUNDS, type RequestFigures, STATUS_CLASSES } from './figures.js';
import { ConnAnswerSchema, ConnMessageSchema, MoveCountsSchema } from './moves.js';

/** A count or a duration in ms: any number from 0 (a setting in seconds may give a fraction). */
const amount = v.pipe(v.number(), v.minValue(0));

/**
 * What a master tells a worker when it spawns it (through {@link ENV_WORKER_OPTIONS}), parsed
 * by the worker. A worker may be newer than its master (an install replaced in place while an
 * old master runs loads the new worker file on its next spawn), so fields added since the
 * first prefork default to what their absence meant.
 */
export const WorkerOptionsSchema = v.object({
  /** Release directory (real path) and the entry module inside it. */
  releaseDir: v.string(),
  entry: v.string(),
  release: v.string(),
  /** Bind names of the sockets at fd 3, 4, ... in the same order. */
  sockets: v.array(v.string()),
  gracefulTimeoutMs: amount,
  /** Goodbyes of the app's `drain` hook are spread over this (`--goodbye-window`). */
  goodbyeWindowMs: v.optional(amount, 5000),
  /**
   * An idle connection that does not move is closed once quiet this long
   * (`--keep-alive-min-timeout`); absent (an earlier master), the 250 ms workers then used.
   */
  keepAliveMinTimeoutMs: v.optional(amount, 250),
  heartbeatMs: v.pipe(amount, v.gtValue(0)),
  /** Recycle after this many requests (0 = never). Jitter already applied by the master. */
  maxRequests: amount,
  /** Warm-up requests to send itself before reporting ready (0 = none), and their path. */
  warmup: v.optional(amount, 0),
  warmupPath: v.optional(v.string(), '/'),
  /** How long the warm-up may take; past it the worker reports ready anyway. */
  warmupTimeoutMs: v.optional(amount, 10_000),
  logLevel: v.string(),
  logFile: v.optional(v.string()),
  /** Record {@link RequestFigures} and send them with every heartbeat (`--metrics-bind` is set). */
  metrics: v.optional(v.boolean(), false),
  /** A canary deploy is judging this master's release: see {@link CanaryMessage}. */
  canary: v.optional(v.boolean(), false),
  /**
   * Its idle HTTP/1.1 connections may be moved to the next generation when it drains, and it
   * may be handed such connections (`--no-move-connections` turns it off; docs/connection-moves.md).
   */
  moveConnections: v.optional(v.boolean(), false),
});
export type WorkerOptions = v.InferOutput<typeof WorkerOptionsSchema>;

/**
 * A kept-alive connection older than this is asked to reconnect (`Connection: close` on its
 * next response) while a canary deploy runs, so that clients spread over both releases'
 * workers as the kernel hands out new connections, instead of staying where they were.
 */
export const CANARY_CONNECTION_MS = 1000;

/** What a worker's requests came to ({@link RequestFigures}), in a heartbeat or a metrics share. */
export const FiguresSchema = v.object({
  codes: v.pipe(v.array(v.number()), v.length(STATUS_CLASSES.length)),
  buckets: v.pipe(v.array(v.number()), v.length(LATENCY_BOUNDS.length + 1)),
  seconds: v.number(),
});

/** A worker's answer to a {@link WorkerHealthRequest}: the status its app answered, or why none. */
const WorkerHealthReplySchema = v.object({
  type: v.literal('health'),
  id: v.number(),
  status: v.nullable(v.number()),
  error: v.nullable(v.string()),
});
export type WorkerHealthReply = v.InferOutput<typeof WorkerHealthReplySchema>;

/**
 * What a worker's app speaks on its sockets: HTTP/1.1 (over TLS when `tls`), HTTP/2 in clear
 * text with prior knowledge (`h2c`, an `http2.createServer()`), or HTTP/2 over TLS chosen by
 * ALPN (`h2`, an `http2.createSecureServer()`, with HTTP/1.1 as its fallback when it allows it),
 * or gRPC (`grpc`, a grpc-js server: HTTP/2, over TLS when `tls`). Health checks through the
 * bind and a worker's checks of itself speak it (gRPC: the standard health service).
 */
export const HTTP_PROTOCOLS = ['http/1.1', 'h2c', 'h2', 'grpc'] as const;
export type HttpProtocol = (typeof HTTP_PROTOCOLS)[number];

/** Messages a worker sends its master, validated by the master as they arrive. */
export const WorkerMessageSchema = v.variant('type', [
  v.object({
    type: v.literal('ready'),
    /** The app's server speaks TLS: whoever checks it through the bind speaks TLS. */
    tls: v.optional(v.boolean(), false),
    /** Optional: a worker of an older prefork speaks HTTP/1.1. */
    http: v.optional(v.picklist(HTTP_PROTOCOLS), 'http/1.1'),
    /**
     * It moves connections: it drains on a {@link DrainMessage}, offers its idle connections and
     * takes those it is handed (absent: a worker of an older prefork, drained by its signal).
     */
    moves: v.optional(v.boolean(), false),
  }),
  v.object({
    type: v.literal('heartbeat'),
    requests: v.number(),
    rss: v.number(),
    /** Present when the master asked for them ({@link WorkerOptions.metrics}). */
    figures: v.optional(FiguresSchema),
    /** Its open connections (optional: a worker of an older prefork does not count them). */
    connections: v.optional(ConnectionCountsSchema),
    /** While it drains: when the connections still open will be closed (`Date.now()` ms). */
    drainDeadline: v.optional(v.number()),
    /** Connections it closed because they were still open at its drain's deadline. */
    closedAtDeadline: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
    /** What its drain did with its connections so far. */
    moves: v.optional(MoveCountsSchema),
  }),
  ConnMessageSchema,
  ConnAnswerSchema,
  /** An exec worker's `WATCHDOG=1` (sd_notify): alive, nothing else known. */
  v.object({ type: v.literal('watchdog') }),
  /** An exec worker's `STATUS=` (sd_notify): free text for `prefork status`. */
  v.object({ type: v.literal('status'), text: v.string() }),
  v.object({ type: v.literal('boot-error'), message: v.string() }),
  v.object({ type: v.literal('retire'), requests: v.number() }),
  WorkerHealthReplySchema,
]);
export type WorkerMessage = v.InferOutput<typeof WorkerMessageSchema>;

/**
 * A canary deploy starts (`on`) or ends: while on, a Node worker records its figures (as with
 * `--metrics-bind`) and asks kept-alive clients to reconnect after
 * {@link CANARY_CONNECTION_MS}, so both releases see a fair share of the traffic.
 */
const CanaryMessageSchema = v.object({ type: v.literal('canary'), on: v.boolean() });
export type CanaryMessage = v.InferOutput<typeof CanaryMessageSchema>;

/**
 * Asks a worker to GET `path` from its own app through a private socket (never the shared
 * listen sockets, where another generation's worker could answer). The app has `answerMs` to
 * answer once the request reaches it; a busy worker has `reachMs` to get it there (the
 * heartbeat timeout: past it, a worker whose loop is stuck is killed anyway). The first
 * masters sent one `timeoutMs` for both.
 */
const WorkerHealthRequestSchema = v.pipe(
  v.object({
    type: v.literal('health-check'),
    id: v.number(),
    path: v.string(),
    answerMs: v.optional(amount),
    reachMs: v.optional(amount),
    timeoutMs: v.optional(amount),
  }),
  v.transform(({ timeoutMs, answerMs, reachMs, ...request }) => ({
    ...request,
    answerMs: answerMs ?? timeoutMs ?? 5000,
    reachMs: reachMs ?? timeoutMs ?? 5000,
  })),
);
export type WorkerHealthRequest = v.InferOutput<typeof WorkerHealthRequestSchema>;

/**
 * Drain (as QUIT does), and whether its idle HTTP/1.1 connections may be moved: the master has
 * somewhere to put them (a serving worker, or the other master of an upgrade). Sent to a worker
 * whose `ready` said `moves`, instead of its stop signal, so that it knows before it begins.
 */
const DrainMessageSchema = v.object({
  type: v.literal('drain'),
  reason: v.string(),
  move: v.boolean(),
});
export type DrainMessage = v.InferOutput<typeof DrainMessageSchema>;

/** Messages a master sends a worker, validated by the worker as they arrive. */
export const MasterMessageSchema = v.union([
  WorkerHealthRequestSchema,
  CanaryMessageSchema,
  DrainMessageSchema,
  ConnMessageSchema,
  ConnAnswerSchema,
]);
export type MasterMessage = v.InferOutput<typeof MasterMessageSchema>;
