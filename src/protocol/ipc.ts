/**
 * Master ⇄ worker IPC: what a master tells a worker when it spawns it, and the messages on
 * their channel (JSON serialization) each way.
 */
import type { RequestFigures } from './figures.js';

/** What a master tells a worker when it spawns it (through {@link ENV_WORKER_OPTIONS}). */
export interface WorkerOptions {
  /** Release directory (real path) and the entry module inside it. */
  releaseDir: string;
  entry: string;
  release: string;
  /** Bind names of the sockets at fd 3, 4, ... in the same order. */
  sockets: string[];
  gracefulTimeoutMs: number;
  heartbeatMs: number;
  /** Recycle after this many requests (0 = never). Jitter already applied by the master. */
  maxRequests: number;
  /** Warm-up requests to send itself before reporting ready (0 = none), and their path. */
  warmup: number;
  warmupPath: string;
  /** How long the warm-up may take; past it the worker reports ready anyway. */
  warmupTimeoutMs: number;
  logLevel: string;
  logFile?: string | undefined;
  /** Record {@link RequestFigures} and send them with every heartbeat (`--metrics-bind` is set). */
  metrics: boolean;
  /** A canary deploy is judging this master's release: see {@link CanaryMessage}. */
  canary: boolean;
}

/**
 * A kept-alive connection older than this is asked to reconnect (`Connection: close` on its
 * next response) while a canary deploy runs, so that clients spread over both releases'
 * workers as the kernel hands out new connections, instead of staying where they were.
 */
export const CANARY_CONNECTION_MS = 1000;

/** Messages a worker sends its master. */
export type WorkerMessage =
  | {
      type: 'ready';
      /** The app's server is a `tls.Server`: whoever checks it through the bind speaks TLS. */
      tls: boolean;
    }
  | {
      type: 'heartbeat';
      requests: number;
      rss: number;
      /** Present when the master asked for them ({@link WorkerOptions.metrics}). */
      figures?: RequestFigures;
    }
  /** An exec worker's `WATCHDOG=1` (sd_notify): alive, nothing else known. */
  | { type: 'watchdog' }
  /** An exec worker's `STATUS=` (sd_notify): free text for `prefork status`. */
  | { type: 'status'; text: string }
  | { type: 'boot-error'; message: string }
  | { type: 'retire'; requests: number }
  | WorkerHealthReply;

/** Messages a master sends a worker. */
export type MasterMessage = WorkerHealthRequest | CanaryMessage;

/**
 * A canary deploy starts (`on`) or ends: while on, a Node worker records its figures (as with
 * `--metrics-bind`) and asks kept-alive clients to reconnect after
 * {@link CANARY_CONNECTION_MS}, so both releases see a fair share of the traffic.
 */
export interface CanaryMessage {
  type: 'canary';
  on: boolean;
}

/**
 * Asks a worker to GET `path` from its own app through a private socket (never the shared
 * listen sockets, where another generation's worker could answer). The app has `answerMs` to
 * answer once the request reaches it; a busy worker has `reachMs` to get it there (the
 * heartbeat timeout: past it, a worker whose loop is stuck is killed anyway).
 */
export interface WorkerHealthRequest {
  type: 'health-check';
  id: number;
  path: string;
  answerMs: number;
  reachMs: number;
}

/** A worker's answer to a {@link WorkerHealthRequest}: the status its app answered, or why none. */
export interface WorkerHealthReply {
  type: 'health';
  id: number;
  status: number | null;
  error: string | null;
}
