import { resolve } from 'node:path';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { ConfigSources } from '../config/load.js';
import type { PartialConfig } from '../config/schema.js';
import { LOG_LEVELS, STOP_MODES } from '../config/schema.js';

/** Parses a whole number option value. */
export function integer(value: string): number {
  if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number');
  return Number(value);
}

/** Parses a number of seconds (fractions allowed). */
export function seconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) {
    throw new InvalidArgumentError('expected a number of seconds');
  }
  return n;
}

/** Parses a number of megabytes. */
export function megabytes(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) {
    throw new InvalidArgumentError('expected a number of megabytes');
  }
  return n;
}

/** Collects a repeatable option's values (`--bind a --bind b`). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** `--root`, `--pid`, `--config`: every command that finds an app root takes them. */
export function addRootOptions(command: Command): Command {
  return command
    .option('--root <dir>', 'app root (holds releases/, current, prefork.pid)', '.')
    .option('--pid <file>', 'pidfile of the serving master (default: <root>/prefork.pid)')
    .option('--config <file>', 'config file (default: <root>/prefork.config.json when present)');
}

/** Every master setting, as `start` takes it. */
export function addMasterOptions(command: Command): Command {
  return command
    .option(
      '-b, --bind <address>',
      'listen address, repeatable: HOST:PORT, :PORT, [::1]:PORT, unix:/path (default: 127.0.0.1:8000)',
      collect,
    )
    .option('-w, --workers <n>', 'number of worker processes (default: number of cores)', integer)
    .option(
      '--timeout <seconds>',
      'kill a worker silent this long (blocked event loop) (default: 30)',
      seconds,
    )
    .option(
      '--graceful-timeout <seconds>',
      'how long a draining worker may finish requests (default: 30)',
      seconds,
    )
    .option(
      '--goodbye-window <seconds>',
      "spread the app drain hook's goodbyes (WebSocket, SSE) over this, 0 = at once (default: 5)",
      seconds,
    )
    .option(
      '--keep-alive-min-timeout <seconds>',
      "a draining worker closes an idle connection it cannot move only once it has been quiet this long (default: 5, Node's keep-alive timeout)",
      seconds,
    )
    .option(
      '--boot-timeout <seconds>',
      'how long a new worker may take to become ready (default: 60)',
      seconds,
    )
    .option(
      '--max-requests <n>',
      'recycle a worker after this many requests, 0 = never (default: 0)',
      integer,
    )
    .option('--max-requests-jitter <n>', 'add 0..n to maxRequests per worker (default: 0)', integer)
    .option(
      '--max-memory <mb>',
      'replace a worker whose memory (RSS) exceeds this many MB, 0 = never (default: 0)',
      megabytes,
    )
    .option(
      '--warmup <requests>',
      'requests each new worker sends itself before it takes traffic, 0 = none (default: 0)',
      integer,
    )
    .option(
      '--warmup-path <path>',
      'path of the warm-up requests: GET, safe to repeat (default: --health-path, else /)',
    )
    .option(
      '--metrics-bind <address>',
      'serve Prometheus metrics (GET /metrics) here: HOST:PORT or unix:/path, never an app bind (default: none)',
    )
    .option(
      '--node <path>',
      'the Node executable masters and workers run, read again on USR2 (default: the one running start)',
    )
    .option('--log-file <file>', 'append logs to this file (USR1 reopens it) instead of stdout')
    .addOption(new Option('--log-level <level>', 'log level (default: info)').choices(LOG_LEVELS))
    .option('--force-winch', 'honour WINCH even in the foreground of a terminal')
    .option(
      '--move-connections',
      'move idle HTTP/1.1 connections to the next generation when workers drain (default)',
    )
    .option(
      '--no-move-connections',
      'close idle connections when their worker drains, after a response that says Connection: close or a quiet time',
    )
    .option('-u, --user <user>', 'run workers as this user (the master must run as root)')
    .option('-g, --group <group>', "run workers as this group (default: the user's primary group)")
    .option('-D, --daemon', 'detach: return once the master is ready, run it in the background')
    .option(
      '--init',
      "stay as the supervisor's main process, parent of every master generation (default when PID 1, as in a container)",
    )
    .option('--no-init', 'be the master even as PID 1 (a deploy then ends a container)')
    .addOption(
      new Option(
        '--stop-mode <mode>',
        'what TERM to that init does: drain (graceful, QUIT) or stop at once (quick, TERM) (default: graceful)',
      ).choices(STOP_MODES),
    );
}

const CONFIG_KEYS = [
  'bind',
  'workers',
  'timeout',
  'gracefulTimeout',
  'goodbyeWindow',
  'keepAliveMinTimeout',
  'bootTimeout',
  'maxRequests',
  'maxRequestsJitter',
  'maxMemory',
  'logFile',
  'logLevel',
  'forceWinch',
  'moveConnections',
  'init',
  'stopMode',
  'daemon',
  'pid',
  'healthPath',
  'user',
  'group',
  'readyTimeout',
  'verifyWindow',
  'warmup',
  'warmupPath',
  'metricsBind',
  'node',
  'retireWindow',
  'canarySteps',
  'canaryWindow',
  'canaryMaxErrorRate',
  'canaryMaxP99Ratio',
  'canaryMinRequests',
] as const;

/** The settings given on the command line, as a partial configuration. */
export function configFromOptions(options: Record<string, unknown>): PartialConfig {
  const config: Record<string, unknown> = {};
  for (const key of CONFIG_KEYS) if (options[key] !== undefined) config[key] = options[key];
  return config as PartialConfig;
}

/** deploy and rollback: how the new release is checked. */
export function addDeployOptions(command: Command): Command {
  return command
    .option(
      '--health-path <path>',
      'GET this path through the first TCP bind; 2xx = healthy (default: any answer below 500 to /)',
    )
    .option(
      '--ready-timeout <seconds>',
      'seconds the new master has to become ready (default: 60)',
      seconds,
    )
    .option(
      '--verify-window <seconds>',
      'seconds of health checks after the old workers stop (default: 2)',
      seconds,
    )
    .option(
      '--retire-window <seconds>',
      'stop the old workers one at a time over this many seconds before WINCH, 0 = all at once (default: 1)',
      seconds,
    )
    .option('--json', 'one JSON event per line on stdout instead of the task list');
}

/** Parses a plain number (fractions allowed). */
function decimal(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n))
    throw new InvalidArgumentError('expected a number');
  return n;
}

/** deploy --canary: how the new release is judged against the old one (docs/canary.md). */
export function addCanaryOptions(command: Command): Command {
  return command
    .option(
      '--canary',
      'move traffic in steps, judging the new release against the old one on the same sockets',
    )
    .option(
      '--canary-steps <list>',
      "the new release's workers at each step: counts or % of the full count (default: 1,50%)",
    )
    .option('--canary-window <seconds>', 'how long each step is judged (default: 30)', seconds)
    .option(
      '--canary-max-error-rate <points>',
      "percentage points of 5xx the new release may add to the old one's (default: 1)",
      decimal,
    )
    .option(
      '--canary-max-p99-ratio <ratio>',
      "how many times the old release's p99 latency the new one's may be (default: 1.5)",
      decimal,
    )
    .option(
      '--canary-min-requests <n>',
      'responses each release needs in a window for a verdict (default: 100)',
      integer,
    );
}

/** Where a command's settings come from: `--root`, `--config` and the options given. */
export function configSources(options: Record<string, unknown>): ConfigSources {
  return {
    root: resolve(String(options.root ?? '.')),
    configFile: options.config as string | undefined,
    cli: configFromOptions(options),
  };
}
