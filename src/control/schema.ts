/**
 * The control socket's wire format (`.prefork/master-<pid>.sock`, one JSON line each way):
 * every request and reply as a valibot schema, so that both sides validate what crosses the
 * boundary and the types are read off the schemas. Fields added since the first control
 * socket are optional or defaulted here, so a reply of an older master still parses (its
 * protocol is {@link CONTROL_PROTOCOL}'s predecessors, `versions.ts`).
 */
import * as v from 'valibot';
import { ConnectionCountsSchema } from '../protocol/connections.js';
import { WORKER_EXIT_REASONS, type WorkerExitReason } from '../protocol/exits.js';
import { FiguresSchema, HTTP_PROTOCOLS } from '../protocol/ipc.js';
import { MoveCountsSchema, noMoves } from '../protocol/moves.js';

export { WORKER_EXIT_REASONS, type WorkerExitReason } from '../protocol/exits.js';
export { describeIssues } from '../protocol/issues.js';

/** Largest control request accepted, in bytes. */
export const CONTROL_MAX_REQUEST = 64 * 1024;

const whole = v.pipe(v.number(), v.integer());
const atLeastOne = v.pipe(v.number(), v.integer(), v.minValue(1));

/** A control request: one JSON line. */
export const ControlRequestSchema = v.variant('cmd', [
  v.object({ cmd: v.literal('status') }),
  v.object({ cmd: v.literal('scale'), workers: atLeastOne }),
  v.object({ cmd: v.literal('health'), path: v.pipe(v.string(), v.startsWith('/')) }),
  v.object({ cmd: v.literal('metrics') }),
  /** USR2, with the new master's first worker count (a canary deploy's first step). */
  v.object({ cmd: v.literal('upgrade'), workers: atLeastOne }),
  /** A canary deploy starts or ends on this master (`CanaryMessage`). */
  v.object({ cmd: v.literal('canary'), on: v.boolean() }),
]);
export type ControlRequest = v.InferOutput<typeof ControlRequestSchema>;
export type ControlCommand = ControlRequest['cmd'];

/** What a request that parses as none of {@link ControlRequestSchema} is told. */
export const UNKNOWN_REQUEST =
  'unknown request: expected {"cmd":"status"}, {"cmd":"metrics"}, {"cmd":"scale","workers":N}, {"cmd":"health","path":"/..."}, {"cmd":"upgrade","workers":N} or {"cmd":"canary","on":BOOL}';

/** A control reply: one JSON line. `protocol` is absent from masters of control protocol 1. */
export const ControlReplySchema = v.variant('ok', [
  v.object({ ok: v.literal(true), result: v.unknown(), protocol: v.optional(v.number()) }),
  v.object({ ok: v.literal(false), error: v.string(), protocol: v.optional(v.number()) }),
]);
export type ControlReply = v.InferOutput<typeof ControlReplySchema>;

const WORKER_STATES = ['booting', 'ready', 'draining'] as const;
const MASTER_STATES = ['booting', 'running', 'old', 'stopping'] as const;
const KINDS = ['node', 'exec'] as const;

/** A worker as `status` reports it. */
export const WorkerStatusSchema = v.object({
  pid: whole,
  release: v.string(),
  /** A Node worker, or an exec release's program (whose requests prefork does not see: 0). */
  kind: v.optional(v.picklist(KINDS), 'node'),
  generation: v.optional(whole, 1),
  state: v.picklist(WORKER_STATES),
  /** Serves HTTPS (its app's server is a `tls.Server`), as its `ready` message said. */
  tls: v.optional(v.boolean(), false),
  /** What its app speaks (`HTTP_PROTOCOLS`), as its `ready` message said. */
  http: v.optional(v.picklist(HTTP_PROTOCOLS), 'http/1.1'),
  requests: v.optional(v.number(), 0),
  rss: v.optional(v.number(), 0),
  /** Seconds since spawn. */
  age: v.optional(v.number(), 0),
  /** An exec worker's last `STATUS=` text (sd_notify), when it sent one. */
  status: v.optional(v.string()),
  /** A Node worker's open connections by kind (absent from an exec worker, or an older master). */
  connections: v.optional(ConnectionCountsSchema),
  /** While it drains: when the connections still open are closed (`Date.now()` ms). */
  drainDeadline: v.optional(v.number()),
  /** Connections it closed because they were still open at its drain's deadline. */
  closedAtDeadline: v.optional(whole, 0),
  /** While it drains: what became of its connections (moved, closed, reset, ...). */
  drained: v.optional(MoveCountsSchema),
});
export type WorkerStatus = v.InferOutput<typeof WorkerStatusSchema>;

/** A release's recent traffic in one master, as `status` shows it. */
export const ReleaseTrafficSchema = v.object({
  release: v.string(),
  /** Requests per second over the last `windowS` seconds. */
  rate: v.number(),
  /** Share of those answered 5xx (0..1); null without figures (metrics off, exec release). */
  errorShare: v.nullable(v.number()),
  windowS: v.number(),
});
export type ReleaseTraffic = v.InferOutput<typeof ReleaseTrafficSchema>;

/**
 * A master as `status` reports it. Masters of control protocol 1 named the new master
 * `childPid` and the old one `parentPid` in their first releases (today's masters send both
 * names too), and lack the fields marked optional: those parse to what they mean (`null`,
 * none, `[]`).
 */
export const MasterStatusSchema = v.pipe(
  v.object({
    pid: whole,
    root: v.string(),
    release: v.string(),
    version: v.optional(v.string(), '?'),
    releaseDir: v.string(),
    state: v.picklist(MASTER_STATES),
    /** Connections its workers, alive and gone, closed at a drain's deadline (`ExitReport`). */
    closedAtDeadline: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 0),
    /** What its workers' drains, alive and gone, did with their connections (`ExitReport`). */
    drained: v.optional(MoveCountsSchema, noMoves),
    workersStopped: v.optional(v.boolean(), false),
    desiredWorkers: atLeastOne,
    /**
     * The worker count of its configuration (`--workers`), which TTIN/TTOU and a canary's first
     * step depart from (absent from masters before canary deploys).
     */
    configuredWorkers: v.optional(whole),
    /** A canary deploy is judging this master's release (absent before canary deploys). */
    canary: v.optional(v.boolean()),
    uptime: v.optional(v.number(), 0),
    rss: v.optional(v.number(), 0),
    binds: v.array(v.string()),
    /** The old master of the upgrade that started this one, while it runs. */
    oldMasterPid: v.optional(v.nullable(whole)),
    /** The same, as the first masters named it. */
    parentPid: v.optional(v.nullable(whole)),
    /** The new master this one started by USR2, while it runs. */
    newMasterPid: v.optional(v.nullable(whole)),
    /** The same, as the first masters named it. */
    childPid: v.optional(v.nullable(whole)),
    /** Why the last new master this one started failed to become ready. */
    upgradeError: v.optional(v.nullable(v.string()), null),
    /** The pidfile holding this master's pid (`prefork.pid`, or `.oldbin` while old). */
    pidfile: v.optional(v.string(), ''),
    /** Seconds a worker may go without a heartbeat before it is killed (`--timeout`). */
    heartbeatTimeout: v.optional(v.number(), 30),
    /**
     * Seconds its draining workers may take (`--graceful-timeout`): what a QUIT to it waits for
     * (absent from masters before it: the waiter's own setting stands in).
     */
    gracefulTimeout: v.optional(v.number()),
    /** The prefork version this master runs (absent from masters that predate it). */
    preforkVersion: v.optional(v.string()),
    node: v.optional(v.object({ version: v.string(), path: v.string() })),
    /** uid and gid its workers run as (`--user`/`--group`); null when they run as the master. */
    workerIdentity: v.optional(v.nullable(v.object({ uid: whole, gid: whole })), null),
    /** Where this master serves `GET /metrics` (`--metrics-bind`), or null. */
    metrics: v.optional(v.nullable(v.string()), null),
    /** Each release's recent traffic through this master's workers. */
    traffic: v.optional(v.array(ReleaseTrafficSchema), []),
    workers: v.array(WorkerStatusSchema),
    /** The control protocol the master speaks (absent: 1). */
    protocol: v.optional(v.number()),
  }),
  v.transform(({ childPid, parentPid, ...status }) => ({
    ...status,
    newMasterPid: status.newMasterPid ?? childPid ?? null,
    oldMasterPid: status.oldMasterPid ?? parentPid ?? null,
  })),
);
export type MasterStatus = v.InferOutput<typeof MasterStatusSchema>;

/** One release's workers and request figures in one master (the control request `metrics`). */
export const ReleaseMetricsSchema = v.object({
  release: v.string(),
  version: v.string(),
  kind: v.picklist(KINDS),
  /** Its workers in this master, by state. */
  workers: v.object({ booting: whole, ready: whole, draining: whole }),
  /** Their resident memory, summed, in bytes. */
  rss: v.number(),
  /** Its workers that exited, by reason. */
  exits: v.pipe(
    v.record(v.picklist(WORKER_EXIT_REASONS), whole),
    v.transform((exits) => exits as Partial<Record<WorkerExitReason, number>>),
  ),
  /**
   * What its Node workers answered, those alive and those gone; absent for an exec release
   * (prefork is not in its data path) and when metrics are off.
   */
  figures: v.optional(FiguresSchema),
  /** Its Node workers' open connections, summed (optional: older masters do not send them). */
  connections: v.optional(ConnectionCountsSchema, { byKind: {}, streams: 0 }),
  /** Connections its workers, alive and gone, closed at their drain's deadline. */
  closedAtDeadline: v.optional(whole, 0),
  /** What its workers' drains, alive and gone, did with their connections. */
  drained: v.optional(MoveCountsSchema, noMoves),
});
export type ReleaseMetrics = v.InferOutput<typeof ReleaseMetricsSchema>;

/**
 * A master's own share of the metrics: its state, release and its workers' figures by release.
 * Whichever master answers a scrape adds the other master's share to its own during an
 * upgrade (docs/metrics.md).
 */
export const MasterMetricsSchema = v.object({
  pid: whole,
  state: v.picklist(MASTER_STATES),
  release: v.string(),
  version: v.string(),
  releases: v.array(ReleaseMetricsSchema),
});
export type MasterMetrics = v.InferOutput<typeof MasterMetricsSchema>;

/**
 * One worker's answer to the control request `health`: the master asks each of its serving
 * workers to GET the path from its own app (`WorkerHealthRequest`).
 */
export const WorkerHealthSchema = v.object({
  pid: whole,
  /** The HTTP status the app answered, or null when it did not answer. */
  status: v.nullable(whole),
  /** Why there is no status (timeout, connection error, the worker exited). */
  error: v.nullable(v.string()),
});
export type WorkerHealth = v.InferOutput<typeof WorkerHealthSchema>;

/** The result of each request, as the client reads it. */
export const ControlResultSchemas = {
  status: MasterStatusSchema,
  metrics: MasterMetricsSchema,
  health: v.array(WorkerHealthSchema),
  scale: v.object({ workers: atLeastOne }),
  upgrade: v.object({ newMasterPid: v.optional(whole) }),
  canary: v.object({ canary: v.boolean() }),
} satisfies Record<ControlCommand, v.GenericSchema>;

/** What a request of command `C` answers. */
export type ControlResult<C extends ControlCommand> = v.InferOutput<
  (typeof ControlResultSchemas)[C]
>;
