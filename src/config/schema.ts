import { availableParallelism } from 'node:os';
import * as v from 'valibot';

/** Log levels pino knows, least to most verbose reversed. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const seconds = v.pipe(v.number(), v.gtValue(0), v.maxValue(86_400));
const text = v.pipe(v.string(), v.minLength(1));
const count = v.pipe(v.number(), v.integer(), v.minValue(0));

/** `--canary-steps`: worker counts (`2`) or shares of the full count (`50%`), comma-separated. */
export const CANARY_STEPS_PATTERN = /^\s*(?:[1-9]\d*%?)(?:\s*,\s*[1-9]\d*%?)*\s*$/;

/** What TERM to the container's init does (docs/containers.md). */
export const STOP_MODES = ['graceful', 'quick'] as const;

/**
 * Every setting, as `prefork.config.json` spells it (camelCase). Command-line options use the
 * same names in kebab-case and win over the file. Unknown keys are errors. Validated by
 * valibot rather than a larger schema library: the master loads this module, and its memory is
 * a promise (`docs/benchmarks.md`).
 */
export const configSchema = v.partial(
  v.strictObject({
    bind: v.pipe(v.array(text), v.minLength(1)),
    workers: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1024)),
    timeout: seconds,
    gracefulTimeout: seconds,
    goodbyeWindow: v.pipe(v.number(), v.minValue(0), v.maxValue(3600)),
    keepAliveMinTimeout: v.pipe(v.number(), v.minValue(0), v.maxValue(3600)),
    bootTimeout: seconds,
    pid: text,
    logFile: text,
    logLevel: v.picklist(LOG_LEVELS),
    daemon: v.boolean(),
    maxRequests: count,
    maxRequestsJitter: count,
    maxMemory: v.pipe(v.number(), v.minValue(0)),
    forceWinch: v.boolean(),
    moveConnections: v.boolean(),
    init: v.boolean(),
    stopMode: v.picklist(STOP_MODES),
    user: text,
    group: text,
    healthPath: v.pipe(v.string(), v.startsWith('/')),
    readyTimeout: seconds,
    verifyWindow: v.pipe(v.number(), v.minValue(0), v.maxValue(3600)),
    warmup: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1_000_000)),
    warmupPath: v.pipe(v.string(), v.startsWith('/')),
    metricsBind: text,
    node: text,
    retireWindow: v.pipe(v.number(), v.minValue(0), v.maxValue(3600)),
    canarySteps: v.pipe(
      v.string(),
      v.regex(
        CANARY_STEPS_PATTERN,
        'expected worker counts or percentages of the full count, comma-separated: e.g. "1,50%"',
      ),
      v.check(
        (steps) => steps.split(',').every((s) => !s.endsWith('%') || Number.parseInt(s, 10) <= 100),
        'a percentage may not exceed 100%',
      ),
    ),
    canaryWindow: seconds,
    canaryMaxErrorRate: v.pipe(v.number(), v.minValue(0), v.maxValue(100)),
    canaryMaxP99Ratio: v.pipe(v.number(), v.minValue(1), v.maxValue(1000)),
    canaryMinRequests: v.pipe(v.number(), v.integer(), v.minValue(1)),
  }),
);

/** Settings as read from a file or the command line: any subset. */
export type PartialConfig = v.InferOutput<typeof configSchema>;

/** The effective configuration of a master. */
export interface Config {
  /** Absolute app root. */
  root: string;
  /** Absolute path of the config file that was read, if any. */
  configFile: string | undefined;
  bind: string[];
  /** `bind` was set (file or command line) rather than defaulted. */
  bindGiven: boolean;
  workers: number;
  /** Seconds. */
  timeout: number;
  gracefulTimeout: number;
  /** Seconds a drain spreads the app's goodbyes over (at most half the graceful timeout). */
  goodbyeWindow: number;
  /**
   * Seconds an idle kept-alive connection that does not move must stay quiet before a drain
   * closes it (nginx's `keepalive_min_timeout`): a client that sends within it is answered,
   * with `Connection: close`.
   */
  keepAliveMinTimeout: number;
  bootTimeout: number;
  /** Absolute pidfile path. */
  pid: string;
  logFile: string | undefined;
  logLevel: (typeof LOG_LEVELS)[number];
  daemon: boolean;
  maxRequests: number;
  maxRequestsJitter: number;
  /** Replace a worker whose RSS exceeds this many MB (0 = never). */
  maxMemory: number;
  forceWinch: boolean;
  /**
   * A drain moves idle HTTP/1.1 connections to the next generation's workers instead of
   * closing them (SPEC §16, docs/connection-moves.md). On by default.
   */
  moveConnections: boolean;
  /**
   * `start` becomes the container's init, parent of every master generation (SPEC §17,
   * docs/containers.md); unset: when it is PID 1.
   */
  init: boolean | undefined;
  /** What TERM (docker stop, Kubernetes) to that init does: QUIT (graceful) or TERM (quick). */
  stopMode: (typeof STOP_MODES)[number];
  /** Run workers as this user / group (the master must be root). */
  user: string | undefined;
  group: string | undefined;
  /** deploy/rollback: GET this through the first TCP bind; 2xx = healthy. */
  healthPath: string | undefined;
  /** deploy: seconds the new master has to become ready. */
  readyTimeout: number;
  /** deploy: seconds of health checks through the bind after WINCH. */
  verifyWindow: number;
  /** Requests each new worker sends itself before it reports ready (0 = none). */
  warmup: number;
  /** The path of those requests (default: `healthPath`, else `/`). */
  warmupPath: string | undefined;
  /** Serve `GET /metrics` here (TCP or `unix:`), on a socket of its own; none when unset. */
  metricsBind: string | undefined;
  /**
   * Absolute path of the Node executable masters and workers run (read again on USR2); unset:
   * the one `start` ran on.
   */
  node: string | undefined;
  /** deploy: seconds over which the old workers stop one at a time before WINCH (0: at once). */
  retireWindow: number;
  /** deploy --canary: the new release's worker count at each step ({@link CANARY_STEPS_PATTERN}). */
  canarySteps: string;
  /** deploy --canary: seconds each step is judged over. */
  canaryWindow: number;
  /** deploy --canary: percentage points of 5xx the new release may add to the old one's. */
  canaryMaxErrorRate: number;
  /** deploy --canary: how many times the old release's p99 the new one's may be. */
  canaryMaxP99Ratio: number;
  /** deploy --canary: responses each side needs in a window for a verdict. */
  canaryMinRequests: number;
}

/** Defaults for every setting a user may leave out. */
export function defaults(): Omit<
  Config,
  | 'root'
  | 'configFile'
  | 'pid'
  | 'logFile'
  | 'bindGiven'
  | 'healthPath'
  | 'user'
  | 'group'
  | 'warmupPath'
  | 'metricsBind'
  | 'node'
  | 'init'
> {
  return {
    bind: ['127.0.0.1:8000'],
    workers: availableParallelism(),
    timeout: 30,
    gracefulTimeout: 30,
    goodbyeWindow: 5,
    keepAliveMinTimeout: 5,
    bootTimeout: 60,
    logLevel: 'info',
    daemon: false,
    maxRequests: 0,
    maxRequestsJitter: 0,
    maxMemory: 0,
    forceWinch: false,
    moveConnections: true,
    stopMode: 'graceful',
    readyTimeout: 60,
    verifyWindow: 2,
    warmup: 0,
    retireWindow: 1,
    canarySteps: '1,50%',
    canaryWindow: 30,
    canaryMaxErrorRate: 1,
    canaryMaxP99Ratio: 1.5,
    canaryMinRequests: 100,
  };
}
