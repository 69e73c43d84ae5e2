import { UsageError } from '../errors/index.js';
import {
  ENV_CANARY_WORKERS,
  ENV_OLD_MASTER_PID,
  ENV_PROTOCOL,
  ENV_READY_FD,
  INTERNAL_ENV,
} from '../protocol/env.js';
import type { ReadyMessage } from '../protocol/handover.js';
import { PREFORK_VERSION } from '../protocol/version.js';
import { HANDOVER_PROTOCOL, OLDEST_HANDOVER_PROTOCOL } from '../protocol/versions.js';
import { type InheritedFd, readInheritedFds } from './handed-sockets.js';
import { OldMaster } from './old-master.js';
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
   * The worker count a canary deploy starts this master with (its first step), when its old
   * master was asked for one; undefined otherwise (the configured count applies).
   */
  canaryWorkers(): number | undefined {
    const raw = this.env[ENV_CANARY_WORKERS];
    if (this.oldMaster === undefined || raw === undefined || !/^[1-9]\d*$/.test(raw))
      return undefined;
    return Number(raw);
  }

  /**
   * The handover protocol of whoever spawned this master: `PREFORK_PROTOCOL`, or 1 when a
   * prefork from before the handover carried a version left it out; undefined when started by
   * hand.
   */
  spawnerProtocol(): number | undefined {
    if (!this.spawnedByPrefork) return undefined;
    const raw = this.env[ENV_PROTOCOL];
    if (raw === undefined) return 1;
    if (!/^\d+$/.test(raw)) throw new UsageError(`${ENV_PROTOCOL}="${raw}" is not a number`);
    return Number(raw);
  }

  /**
   * Throws a {@link UsageError} saying why, before anything is opened, when the old master
   * speaks a handover protocol this prefork cannot take over from (too old, or newer: a
   * downgrade across protocols). The CLI reports it on the ready pipe; the old master serves on.
   */
  assertCompatible(): void {
    const theirs = this.spawnerProtocol();
    if (this.oldMaster === undefined || theirs === undefined) return;
    if (theirs >= OLDEST_HANDOVER_PROTOCOL && theirs <= HANDOVER_PROTOCOL) return;
    const range = `${OLDEST_HANDOVER_PROTOCOL}–${HANDOVER_PROTOCOL}`;
    const fix =
      theirs > HANDOVER_PROTOCOL
        ? 'a downgrade across handover protocols is not supported: stop the old master and start this prefork'
        : 'upgrade through an intermediate prefork release, or stop the old master and start this one';
    throw new UsageError(
      `cannot take over from old master ${this.oldMaster.pid}: it speaks handover protocol ${theirs}, prefork ${PREFORK_VERSION} takes over from protocols ${range}; ${fix}. The old master serves on`,
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
