/**
 * The shared protocol of prefork: every name that crosses a process boundary lives here —
 * environment variables, file names in the app root, IPC messages between a master and its
 * workers, the control-socket wire format and process titles. Nothing else in `src/` spells
 * these strings out.
 */

// ---------------------------------------------------------------------------------------------
// Environment variables
// ---------------------------------------------------------------------------------------------

/** Comma-separated fds of the listen sockets a new master inherits (`3,4`). */
export const ENV_FDS = 'PREFORK_FDS';
/** Comma-separated bind addresses of those fds, in the same order. */
export const ENV_FD_NAMES = 'PREFORK_FD_NAMES';
/** fd on which a spawned master reports readiness (or its boot error) to whoever spawned it. */
export const ENV_READY_FD = 'PREFORK_READY_FD';
/**
 * The version of the handover between a master and the one it spawns: these variables, the
 * socket names and the ready message. Set by every master that spawns one; absent means 1.
 */
export const ENV_PROTOCOL = 'PREFORK_PROTOCOL';

/**
 * The handover protocol this prefork speaks. 1: every prefork before the handover carried a
 * version. 2: adds {@link ENV_PROTOCOL}, the `metrics:` socket name prefix and the ready
 * message's `protocol` and `version`; everything of 1 is unchanged, so 1 → 2 works both ways.
 * Raise it when a change would be misread by a master that speaks the previous one.
 */
export const HANDOVER_PROTOCOL = 2;

/**
 * The oldest handover protocol an old master may speak for this prefork to take over from it
 * (docs/upgrade.md: "Upgrading prefork itself").
 */
export const OLDEST_HANDOVER_PROTOCOL = 1;

/** Pid of the old master, set in a master spawned by USR2 (the name predates old/new master naming; kept so masters of earlier releases still understand each other). */
export const ENV_OLD_MASTER_PID = 'PREFORK_PARENT_PID';
/**
 * Set by an old master that starts its new master for a canary deploy (control request
 * `upgrade` with `workers`): the new master starts with this many workers instead of its
 * configured count, and records request figures from the start (docs/canary.md).
 */
export const ENV_CANARY_WORKERS = 'PREFORK_CANARY_WORKERS';
/** JSON {@link WorkerOptions} handed to a worker; removed from its env before the app loads. */
export const ENV_WORKER_OPTIONS = 'PREFORK_WORKER_OPTIONS';
/** systemd socket activation (sd_listen_fds(3)). */
export const ENV_LISTEN_FDS = 'LISTEN_FDS';
export const ENV_LISTEN_PID = 'LISTEN_PID';
export const ENV_LISTEN_FDNAMES = 'LISTEN_FDNAMES';
/** systemd readiness (sd_notify(3)): the datagram socket an exec worker sends `READY=1` on. */
export const ENV_NOTIFY_SOCKET = 'NOTIFY_SOCKET';
/** systemd watchdog (sd_watchdog_enabled(3)): how often, and which pid, must send `WATCHDOG=1`. */
export const ENV_WATCHDOG_USEC = 'WATCHDOG_USEC';
export const ENV_WATCHDOG_PID = 'WATCHDOG_PID';

/** What prefork sets in each exec worker's environment; a release's `env` may not set these. */
export const EXEC_WORKER_ENV = [
  ENV_LISTEN_FDS,
  ENV_LISTEN_PID,
  ENV_LISTEN_FDNAMES,
  ENV_NOTIFY_SOCKET,
  ENV_WATCHDOG_USEC,
  ENV_WATCHDOG_PID,
] as const;

/** Variables prefork sets for its own processes; stripped from the environment it passes on. */
export const INTERNAL_ENV = [
  ENV_PROTOCOL,
  ENV_FDS,
  ENV_FD_NAMES,
  ENV_READY_FD,
  ENV_OLD_MASTER_PID,
  ENV_CANARY_WORKERS,
  ENV_WORKER_OPTIONS,
  ...EXEC_WORKER_ENV,
] as const;

/** The first fd a passed listen socket occupies (after stdin, stdout, stderr). */
export const FIRST_LISTEN_FD = 3;

// ---------------------------------------------------------------------------------------------
// Files in the app root
// ---------------------------------------------------------------------------------------------

/** Directory holding the releases. */
export const RELEASES_DIR = 'releases';
/** Symlink to the release that should be running. */
export const CURRENT_LINK = 'current';
/** Default pidfile of the serving master. */
export const PIDFILE = 'prefork.pid';
/** Suffix the old master's pidfile gets during an upgrade. */
export const OLDBIN_SUFFIX = '.oldbin';
/** In a release directory: makes it an exec release (any executable; docs/exec-releases.md). */
export const EXEC_RELEASE_FILE = 'prefork.json';
/** Optional configuration file. */
export const CONFIG_FILE = 'prefork.config.json';
/** prefork's own state directory (mode 0700). */
export const STATE_DIR = '.prefork';

/**
 * The notify socket (`NOTIFY_SOCKET`) of one exec worker of the master with this pid, relative
 * to {@link STATE_DIR}: one per worker, so a message names its sender by where it arrives.
 */
export function notifySocketName(masterPid: number, workerSeq: number): string {
  return `notify-${masterPid}-${workerSeq}.sock`;
}

/** Control socket of the master with this pid, relative to {@link STATE_DIR}. */
export function controlSocketName(pid: number): string {
  return `master-${pid}.sock`;
}

/** The pid a {@link controlSocketName} names, or undefined for any other file name. */
export function controlSocketPid(name: string): number | undefined {
  const pid = /^master-(\d+)\.sock$/.exec(name)?.[1];
  return pid === undefined ? undefined : Number(pid);
}

// ---------------------------------------------------------------------------------------------
// Process titles
// ---------------------------------------------------------------------------------------------

/** `prefork: master [v1]`, or `prefork: master (old) [v1]` while its new master runs. */
export function masterTitle(release: string, { old }: { old: boolean }): string {
  return `prefork: master${old ? ' (old)' : ''} [${release}]`;
}

/** `prefork: worker [v1]`. */
export function workerTitle(release: string): string {
  return `prefork: worker [${release}]`;
}

// ---------------------------------------------------------------------------------------------
// Master ⇄ worker IPC
// ---------------------------------------------------------------------------------------------

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

/**
 * Upper bounds, in seconds, of the request-duration histogram `/metrics` exposes (Prometheus's
 * defaults); a last bucket, +Inf, takes the rest. Each is one of {@link LATENCY_BOUNDS}.
 */
export const HISTOGRAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** One decade of {@link LATENCY_BOUNDS}: no two neighbours more than 1.34× apart. */
const DECADE = [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5] as const;

/**
 * Upper bounds, in seconds, of the buckets workers count latencies in: 0.1 ms to 10 s, about
 * 25% apart, fine enough for a canary to compare two p99s (docs/canary.md), and holding every
 * {@link HISTOGRAM_BUCKETS} bound so the exposed histogram is a sum of them. Fixed, so figures
 * from any worker of any master add up bucket by bucket.
 */
export const LATENCY_BOUNDS: readonly number[] = [
  ...[-4, -3, -2, -1, 0].flatMap((exp) =>
    DECADE.map((m) => Number((m * 10 ** exp).toPrecision(3))),
  ),
  10,
];

/** The status classes responses are counted by, in the order of {@link RequestFigures.codes}. */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/**
 * What a Node worker's requests came to since it started (cumulative, like the counters they
 * become): responses by status class and by latency.
 */
export interface RequestFigures {
  /** Responses per {@link STATUS_CLASSES} entry. */
  codes: number[];
  /** Responses per latency bucket, not cumulative: one per {@link LATENCY_BOUNDS} bound, then +Inf. */
  buckets: number[];
  /** Seconds spent answering, summed over those responses. */
  seconds: number;
}

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

// ---------------------------------------------------------------------------------------------
// Ready pipe (new master → whoever spawned it: an old master, or `start --daemon`)
// ---------------------------------------------------------------------------------------------

/** One JSON line written on the ready fd. */
export type ReadyMessage =
  | {
      ready: true;
      pid: number;
      /** Bind names the new master serves: the old one leaves those Unix socket files alone. */
      binds: string[];
      /** The new master's handover protocol and prefork version (absent from protocol 1). */
      protocol?: number;
      version?: string;
    }
  | { ready: false; error: string };

// ---------------------------------------------------------------------------------------------
// Control socket
// ---------------------------------------------------------------------------------------------

/** Largest control request accepted, in bytes. */
export const CONTROL_MAX_REQUEST = 64 * 1024;

/** A control request: one JSON line. */
export type ControlRequest =
  | { cmd: 'status' }
  | { cmd: 'scale'; workers: number }
  | { cmd: 'health'; path: string }
  | { cmd: 'metrics' }
  /** USR2, with the new master's first worker count (a canary deploy's first step). */
  | { cmd: 'upgrade'; workers: number }
  /** A canary deploy starts or ends on this master ({@link CanaryMessage}). */
  | { cmd: 'canary'; on: boolean };

/** A control reply: one JSON line. */
export type ControlReply<T = unknown> = { ok: true; result: T } | { ok: false; error: string };

/** A worker as `status` reports it. */
export interface WorkerStatus {
  pid: number;
  release: string;
  /** A Node worker, or an exec release's program (whose requests prefork does not see: 0). */
  kind: 'node' | 'exec';
  generation: number;
  state: 'booting' | 'ready' | 'draining';
  /** Serves HTTPS (its app's server is a `tls.Server`), as its `ready` message said. */
  tls: boolean;
  requests: number;
  rss: number;
  /** Seconds since spawn. */
  age: number;
  /** An exec worker's last `STATUS=` text (sd_notify), when it sent one. */
  status?: string | undefined;
}

/** Why a worker exited, as `prefork_worker_exits_total{reason}` counts it (docs/metrics.md). */
export const WORKER_EXIT_REASONS = [
  'drained',
  'recycled',
  'stopped',
  'crashed',
  'boot_failed',
  'hung',
  'killed',
] as const;
export type WorkerExitReason = (typeof WORKER_EXIT_REASONS)[number];

/** One release's workers and request figures in one master (the control request `metrics`). */
export interface ReleaseMetrics {
  release: string;
  version: string;
  kind: 'node' | 'exec';
  /** Its workers in this master, by state. */
  workers: Record<WorkerStatus['state'], number>;
  /** Their resident memory, summed, in bytes. */
  rss: number;
  /** Its workers that exited, by reason. */
  exits: Partial<Record<WorkerExitReason, number>>;
  /**
   * What its Node workers answered, those alive and those gone; absent for an exec release
   * (prefork is not in its data path) and when metrics are off.
   */
  figures?: RequestFigures;
}

/**
 * A master's own share of the metrics: its state, release and its workers' figures by release.
 * Whichever master answers a scrape adds the other master's share to its own during an
 * upgrade (docs/metrics.md).
 */
export interface MasterMetrics {
  pid: number;
  state: MasterStatus['state'];
  release: string;
  version: string;
  releases: ReleaseMetrics[];
}

/** A release's recent traffic in one master, as `status` shows it. */
export interface ReleaseTraffic {
  release: string;
  /** Requests per second over the last `windowS` seconds. */
  rate: number;
  /** Share of those answered 5xx (0..1); null without figures (metrics off, exec release). */
  errorShare: number | null;
  windowS: number;
}

/**
 * One worker's answer to the control request `health`: the master asks each of its serving
 * workers to GET the path from its own app (see {@link WorkerHealthRequest}).
 */
export interface WorkerHealth {
  pid: number;
  /** The HTTP status the app answered, or null when it did not answer. */
  status: number | null;
  /** Why there is no status (timeout, connection error, the worker exited). */
  error: string | null;
}

/** A master as `status` reports it. */
export interface MasterStatus {
  pid: number;
  root: string;
  release: string;
  version: string;
  releaseDir: string;
  state: 'booting' | 'running' | 'old' | 'stopping';
  workersStopped: boolean;
  desiredWorkers: number;
  /**
   * The worker count of its configuration (`--workers`), which TTIN/TTOU and a canary's first
   * step depart from (absent from masters before canary deploys).
   */
  configuredWorkers?: number;
  /** A canary deploy is judging this master's release ({@link CanaryMessage}). */
  canary?: boolean;
  uptime: number;
  rss: number;
  binds: string[];
  /** The old master of the upgrade that started this one, while it runs. */
  oldMasterPid: number | null;
  /** The new master this one started by USR2, while it runs. */
  newMasterPid: number | null;
  /** Why the last new master this one started failed to become ready. */
  upgradeError: string | null;
  /** The pidfile holding this master's pid (`prefork.pid`, or `.oldbin` while old). */
  pidfile: string;
  /** Seconds a worker may go without a heartbeat before it is killed (`--timeout`). */
  heartbeatTimeout: number;
  /**
   * The prefork version this master runs, and its Node (version and executable); absent from
   * a master of a prefork that predates them (met while upgrading prefork itself).
   */
  preforkVersion?: string;
  node?: { version: string; path: string };
  /** uid and gid its workers run as (`--user`/`--group`); null when they run as the master. */
  workerIdentity: { uid: number; gid: number } | null;
  /** Where this master serves `GET /metrics` (`--metrics-bind`), or null. */
  metrics: string | null;
  /** Each release's recent traffic through this master's workers. */
  traffic: ReleaseTraffic[];
  workers: WorkerStatus[];
}
