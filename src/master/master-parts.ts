import type { ConfigSources } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { ControlServer } from '../control/server.js';
import type { NotifyDir } from '../exec/notify-dir.js';
import type { Handover } from '../handover/handover.js';
import type { ListenSocket } from '../handover/listen-sockets.js';
import type { NewMasterEvent } from '../handover/new-master.js';
import type { MasterCommand } from '../handover/spawn-master.js';
import type { Log } from '../log/logger.js';
import type { MetricsServer } from '../metrics/metrics-server.js';
import type { WorkerMessage } from '../protocol/ipc.js';
import type { Release } from '../release/read-release.js';
import type { WorkerIdentity } from '../worker-kind/worker-identity.js';
import type { MasterEffects } from './effects.js';

/** The signals a master handles; each has one handler below (`handleHup`, ...). */
export const MASTER_SIGNALS = [
  'SIGTERM',
  'SIGINT',
  'SIGQUIT',
  'SIGHUP',
  'SIGTTIN',
  'SIGTTOU',
  'SIGUSR1',
  'SIGUSR2',
  'SIGWINCH',
] as const;
export type MasterSignal = (typeof MASTER_SIGNALS)[number];

/** Everything a master loop reacts to. All state changes happen while handling one of these. */
export type MasterEvent =
  | { kind: 'signal'; signal: MasterSignal }
  | { kind: 'worker-message'; pid: number; message: WorkerMessage }
  | { kind: 'worker-exit'; pid: number; code: number | null; signal: NodeJS.Signals | null }
  | NewMasterEvent
  | { kind: 'tick' };

/** What a master is built from (see `start-master.ts`). */
export interface MasterParts {
  config: Config;
  /** Where the configuration came from, to read it again on HUP. */
  configSources: ConfigSources;
  release: Release;
  sockets: ListenSocket[];
  log: Log;
  /** How this master was started; USR2 starts the next one the same way. */
  command: MasterCommand;
  /** Environment for workers: the original one, less prefork's own variables. */
  workerEnv: NodeJS.ProcessEnv;
  /** What whoever spawned this master handed it: the ready pipe, the old master (USR2). */
  handover: Handover;
  /** In the foreground of a terminal: WINCH is a window resize, not a command. */
  interactive: boolean;
  control: ControlServer | undefined;
  /** `GET /metrics` on the metrics socket (`--metrics-bind`), when set. */
  metrics: MetricsServer | undefined;
  /** uid/gid for workers (`--user`/`--group`). */
  identity: WorkerIdentity | undefined;
  /** Where exec workers' notify sockets go. */
  notifyDir: NotifyDir;
  /** Called when the master gives up before it was ever ready (`start` puts `current` back). */
  onBootFailure?: (() => void) | undefined;
  /** What the master does to processes, the clock and its exit; unit tests record them. */
  effects?: MasterEffects | undefined;
}
