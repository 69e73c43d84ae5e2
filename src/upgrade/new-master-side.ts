import {
  ENV_OLD_MASTER_PID,
  ENV_READY_FD,
  INTERNAL_ENV,
  OLDBIN_SUFFIX,
  type ReadyMessage,
} from '../protocol/index.js';
import { removePidfileIfOurs } from '../state/pidfile.js';
import { type InheritedFd, readInheritedFds } from './listen-sockets.js';
import { ReadyPipe } from './ready-pipe.js';

/**
 * The new master's side of an upgrade (and of `start --daemon`, whose detached master is
 * spawned the same way): what this process was handed by whoever spawned it — the listen
 * sockets, the ready pipe, the old master's pid — read once from the environment and removed
 * from it, so nothing prefork-internal leaks into workers or the next master.
 */
export class Handover {
  private constructor(
    private readonly readyPipe: ReadyPipe,
    /** Started by another prefork process (USR2's old master, or `start --daemon`). */
    readonly spawnedByPrefork: boolean,
    /** The old master, when USR2 started this one. */
    readonly oldMaster: OldMaster | undefined,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /**
   * This process's handover: read from `process.env` the first time, which then loses
   * prefork's variables (so they reach no worker and no next master); the same object after.
   */
  static take(): Handover {
    if (taken !== undefined) return taken;
    taken = Handover.from(process.env);
    for (const name of INTERNAL_ENV) delete process.env[name];
    return taken;
  }

  /** The handover that `env` describes (unit tests pass `{}`: a master started by hand). */
  static from(env: NodeJS.ProcessEnv): Handover {
    const rawOld = env[ENV_OLD_MASTER_PID];
    const oldPid = rawOld && /^\d+$/.test(rawOld) ? Number(rawOld) : undefined;
    return new Handover(
      new ReadyPipe(env),
      env[ENV_READY_FD] !== undefined,
      oldPid === undefined ? undefined : new OldMaster(oldPid),
      { ...env },
    );
  }

  /**
   * The listen sockets handed over: an old master's (`PREFORK_FDS`) or systemd's
   * (`LISTEN_FDS`). Throws, naming the variable, when they are malformed.
   */
  inheritedFds(): InheritedFd[] {
    return readInheritedFds(this.env);
  }

  /** Tells whoever spawned this master that it is ready (a no-op for a master started by hand). */
  reportReady(message: Extract<ReadyMessage, { ready: true }>): void {
    this.readyPipe.send(message);
  }

  /** Tells whoever spawned this master why it will never be ready. Only the first report counts. */
  reportFailure(reason: string): void {
    this.readyPipe.send({ ready: false, error: reason });
  }
}

let taken: Handover | undefined;

/**
 * The old master of the upgrade that started this master, seen from the new one: whether it
 * still runs, and the `.oldbin` pidfile it may leave behind if it is killed.
 */
export class OldMaster {
  private goneNoticed = false;

  constructor(readonly pid: number) {}

  /**
   * True while it runs. The new master is its child, and a child is reparented the moment its
   * parent exits (even while the parent is an unreaped zombie), so the parent pid tells.
   */
  alive(): boolean {
    return process.ppid === this.pid;
  }

  /**
   * Once it has exited (QUIT at the end of an upgrade, or killed): removes the `.oldbin`
   * pidfile it left if it died without cleaning up, so one master and one pidfile remain.
   * Returns what to log the first time it is seen gone, undefined otherwise.
   */
  noticeGone(pidfile: string): { level: 'info' | 'warn'; message: string } | undefined {
    if (this.goneNoticed || this.alive()) return undefined;
    this.goneNoticed = true;
    if (removePidfileIfOurs(pidfile + OLDBIN_SUFFIX, this.pid)) {
      return {
        level: 'warn',
        message: `old master ${this.pid} died without cleaning up: removed its ${OLDBIN_SUFFIX} pidfile`,
      };
    }
    return {
      level: 'info',
      message: `old master ${this.pid} has exited: this master serves alone`,
    };
  }
}
