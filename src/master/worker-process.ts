import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { NotifyDir } from '../exec/notify-dir.js';
import { spawnExecWorker } from '../exec/spawn-exec-worker.js';
import {
  ENV_WORKER_OPTIONS,
  type MasterMessage,
  type RequestFigures,
  type WorkerExitReason,
  type WorkerMessage,
  type WorkerOptions,
} from '../protocol/index.js';
import type { NodeRelease, Release } from '../release/read-release.js';
import type { WorkerIdentity } from './worker-identity.js';

/** The worker entry script, next to this folder in `dist/`. */
export const WORKER_SCRIPT = fileURLToPath(new URL('../worker/main.js', import.meta.url));

/** A master's record of one worker process. */
export interface WorkerRecord {
  pid: number;
  /** The worker process, for IPC (`send`); undefined for an exec worker, which has no IPC. */
  process: Pick<ChildProcess, 'send'> | undefined;
  /** Workers of an older generation are drained once the current one is ready (HUP). */
  generation: number;
  release: Release;
  state: 'booting' | 'ready' | 'draining';
  /** Serves HTTPS (from its `ready` message). */
  tls: boolean;
  bornAt: number;
  readyAt: number | undefined;
  lastBeat: number;
  requests: number;
  rss: number;
  /** Asked to be replaced (max requests reached). */
  retiring: boolean;
  /** Deadline after which a draining worker is killed. */
  killAt: number | undefined;
  /** Why the master killed it, or what it reported when it failed to boot. */
  failure: string | undefined;
  /** SIGKILL was sent: its exit is on the way. */
  killed: boolean;
  /** An exec worker's last `STATUS=` (sd_notify), for `prefork status`. */
  statusText: string | undefined;
  /** An exec worker's last line of output: often why it died. */
  lastOutput: string | undefined;
  /** When an exec worker's RSS was last read from `/proc`. */
  rssAt: number;
  /** A Node worker's request figures, from its latest heartbeat (with metrics on). */
  figures: RequestFigures | undefined;
  /** Why its exit is on the way, when the master decided it (killed, quick shutdown). */
  exitReason: WorkerExitReason | undefined;
}

/** Everything a worker spawn needs. */
export interface SpawnWorkerOptions {
  release: Release;
  generation: number;
  /** fds of the listen sockets, placed at 3, 4, ... in the worker. */
  fds: number[];
  env: NodeJS.ProcessEnv;
  /** Run the worker as this uid/gid (`--user`/`--group`). */
  identity: WorkerIdentity | undefined;
  /** The Node executable a Node worker runs (the master's `node`). */
  nodePath: string;
  worker: Omit<WorkerOptions, 'releaseDir' | 'entry' | 'release'>;
  onMessage: (pid: number, message: WorkerMessage) => void;
  onExit: (pid: number, code: number | null, signal: NodeJS.Signals | null) => void;
  /** Where exec workers' notify sockets go (`.prefork/`, or a directory of the workers' user). */
  notifyDir: NotifyDir;
  /** A line an exec worker wrote on stdout or stderr. */
  onOutput: (pid: number, stream: 'stdout' | 'stderr', line: string) => void;
}

/** Spawns a worker for the release: a Node worker, or an exec release's command. */
export function spawnWorker(options: SpawnWorkerOptions): WorkerRecord {
  const { release } = options;
  return release.kind === 'exec'
    ? spawnExecWorker(release, options)
    : spawnNodeWorker(release, options);
}

/**
 * Spawns a Node worker: `node dist/worker/main.js` in the release directory, no shell, the
 * listen sockets at fd 3, 4, ..., an IPC channel after them, stdout/stderr shared with the
 * master.
 */
function spawnNodeWorker(release: NodeRelease, options: SpawnWorkerOptions): WorkerRecord {
  const payload: WorkerOptions = {
    ...options.worker,
    releaseDir: release.dir,
    entry: release.entry,
    release: release.name,
  };
  const child = spawn(options.nodePath, [WORKER_SCRIPT], {
    cwd: release.dir,
    env: { ...options.env, [ENV_WORKER_OPTIONS]: JSON.stringify(payload) },
    stdio: ['ignore', 'inherit', 'inherit', ...options.fds, 'ipc'],
    serialization: 'json',
    ...(options.identity ?? {}),
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn a worker process');
  child.on('message', (message) => options.onMessage(pid, message as WorkerMessage));
  child.on('exit', (code, signal) => options.onExit(pid, code, signal));
  // A send to a worker that just died fails asynchronously; its exit is handled above.
  child.on('error', () => {});
  return newWorkerRecord(pid, child, options, Date.now());
}

/** The record of a worker just spawned (booting) as `pid`, born at `now`. */
export function newWorkerRecord(
  pid: number,
  process: WorkerRecord['process'],
  options: Pick<SpawnWorkerOptions, 'generation' | 'release'>,
  now: number,
): WorkerRecord {
  return {
    pid,
    process,
    generation: options.generation,
    release: options.release,
    state: 'booting',
    tls: false,
    bornAt: now,
    readyAt: undefined,
    lastBeat: now,
    requests: 0,
    rss: 0,
    retiring: false,
    killAt: undefined,
    failure: undefined,
    killed: false,
    statusText: undefined,
    lastOutput: undefined,
    rssAt: 0,
    figures: undefined,
    exitReason: undefined,
  };
}

/** Sends a Node worker a message on its IPC channel, ignoring one that is gone or closing. */
export function sendWorker(worker: WorkerRecord, message: MasterMessage): void {
  try {
    worker.process?.send(message, () => {});
  } catch {
    // its channel closed: it is exiting, and its exit event is on its way
  }
}

/** Sends `signal` to a worker, ignoring one that is already gone. */
export function signalWorker(worker: WorkerRecord, signal: NodeJS.Signals): void {
  try {
    process.kill(worker.pid, signal);
  } catch {
    // exited already; its exit event is on its way
  }
}
