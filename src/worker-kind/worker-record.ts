import type { ChildProcess } from 'node:child_process';
import type { ConnectionCounts } from '../protocol/connections.js';
import type { WorkerExitReason } from '../protocol/exits.js';
import type { RequestFigures } from '../protocol/figures.js';
import type { HttpProtocol, WorkerMessage, WorkerOptions } from '../protocol/ipc.js';
import type { ConnAnswer, ConnMessage, MoveCounts } from '../protocol/moves.js';
import type { Release } from '../release/read-release.js';
import type { WorkerIdentity } from './worker-identity.js';
import type { WorkerKind } from './worker-kind.js';

/** A master's record of one worker process. */
export interface WorkerRecord {
  pid: number;
  /** Its kind: what the master does to it that depends on whether it is a Node worker. */
  kind: WorkerKind;
  /** The worker process, for IPC (`send`); undefined for an exec worker, which has no IPC. */
  process: Pick<ChildProcess, 'send'> | undefined;
  /** Workers of an older generation are drained once the current one is ready (HUP). */
  generation: number;
  release: Release;
  state: 'booting' | 'ready' | 'draining';
  /** Serves HTTPS (from its `ready` message). */
  tls: boolean;
  /** What its app speaks (from its `ready` message). */
  http: HttpProtocol;
  /** It speaks the moves protocol: drained by a `drain` message (from its `ready` message). */
  moves: boolean;
  /** What its drain did with its connections (moved, closed, ...), from its heartbeats. */
  moveCounts: MoveCounts | undefined;
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
  /** A Node worker's open connections by kind, from its latest heartbeat. */
  connections: ConnectionCounts | undefined;
  /** While a Node worker drains: when it closes the connections still open (`Date.now()` ms). */
  drainDeadline: number | undefined;
  /** Connections it closed because they were still open at its drain's deadline. */
  closedAtDeadline: number;
  /** Why its exit is on the way, when the master decided it (killed, quick shutdown). */
  exitReason: WorkerExitReason | undefined;
}

/** Everything a worker spawn needs. */
export interface SpawnWorkerOptions {
  kind: WorkerKind;
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
  /** A connection a Node worker offers, or its answer for one it was handed (with the fd). */
  onMove?: ((pid: number, message: ConnMessage | ConnAnswer, handle: unknown) => void) | undefined;
  onExit: (pid: number, code: number | null, signal: NodeJS.Signals | null) => void;
  /** Where exec workers' notify sockets go (`.prefork/`, or a directory of the workers' user). */
  notifyDir: { path(): string };
  /** A line an exec worker wrote on stdout or stderr. */
  onOutput: (pid: number, stream: 'stdout' | 'stderr', line: string) => void;
  /**
   * A message on a Node worker's IPC channel that is none of prefork's: the app's own
   * `process.send` (PM2's `process.send('ready')`), or a worker of another prefork version.
   */
  onStrayMessage: (pid: number, problem: string) => void;
}

/** The record of a worker just spawned (booting) as `pid`, born at `now`. */
export function newWorkerRecord(
  pid: number,
  process: WorkerRecord['process'],
  options: Pick<SpawnWorkerOptions, 'generation' | 'release' | 'kind'>,
  now: number,
): WorkerRecord {
  return {
    pid,
    kind: options.kind,
    process,
    generation: options.generation,
    release: options.release,
    state: 'booting',
    tls: false,
    http: 'http/1.1',
    moves: false,
    moveCounts: undefined,
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
    connections: undefined,
    drainDeadline: undefined,
    closedAtDeadline: 0,
    exitReason: undefined,
  };
}
