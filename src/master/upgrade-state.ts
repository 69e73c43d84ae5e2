import type { Logger } from 'pino';
import { type ConfigSources, loadConfig } from '../config/load.js';
import { messageOf } from '../errors/index.js';
import type { SocketSharers } from '../handover/listen-sockets.js';
import {
  type NewMaster,
  type StartUpgradeOptions,
  UpgradeRefused,
} from '../handover/new-master.js';
import type { OldMaster } from '../handover/old-master.js';
import type { MasterCommand } from '../handover/spawn-master.js';
import { checkNode } from '../process/node-binary.js';
import type { ReadyMessage } from '../protocol/handover.js';
import type { MasterEffects } from './effects.js';

/**
 * How USR2 starts the new master: as this one was started (`command`), on the Node the
 * configuration names now (`node`, read again so that a new Node takes effect), checked to run.
 */
function nextMasterCommand(sources: ConfigSources, command: MasterCommand): MasterCommand {
  const { node } = loadConfig(sources);
  if (node === undefined || node === command.execPath) return command;
  checkNode(node);
  return { ...command, execPath: node };
}

/** What starting an upgrade from this master takes (its command is re-read for `node`). */
export type BeginUpgrade = StartUpgradeOptions & { configSources: ConfigSources };

/**
 * This master's part in upgrades, in one owner: as an old master, the new master it started by
 * USR2 and why the last one failed; as a new master, the old master that started it; and the
 * pidfile it holds meanwhile (`prefork.pid`, or `.oldbin` while it is the old one).
 */
export class UpgradeState {
  /** The new master this one started by USR2, while it runs. */
  private newMaster: NewMaster | undefined;
  /** Why the last new master failed to start, for `status` and `deploy`. */
  private lastError: string | undefined;
  /** The pidfile holding this master's pid. */
  private held: string;

  constructor(
    pidfile: string,
    /** The old master of the upgrade that started this one (undefined when started by hand). */
    readonly oldMaster: OldMaster | undefined,
  ) {
    this.held = pidfile;
  }

  /** A new master of this one runs: this master is the old one. */
  get inFlight(): boolean {
    return this.newMaster !== undefined;
  }

  get newMasterPid(): number | undefined {
    return this.newMaster?.pid;
  }

  get error(): string | undefined {
    return this.lastError;
  }

  get pidfile(): string {
    return this.held;
  }

  oldMasterAlive(): boolean {
    return this.oldMaster?.alive() === true;
  }

  /** Why an upgrade cannot start now (another in flight, or this master's old one still up). */
  refusal(): string | undefined {
    if (this.newMaster !== undefined) {
      return `an upgrade is already in flight (new master pid ${this.newMaster.pid})`;
    }
    if (this.oldMaster?.alive()) {
      return `this master is itself the new master of an upgrade; its old master (pid ${this.oldMaster.pid}) still runs — QUIT it first`;
    }
    return undefined;
  }

  /**
   * USR2 (or the control request `upgrade`): moves the pidfile to `.oldbin` and starts the new
   * master. Returns why it was refused (nothing changed), undefined once it started.
   */
  begin(effects: Pick<MasterEffects, 'startUpgrade'>, options: BeginUpgrade): string | undefined {
    const refused = this.refusal();
    if (refused !== undefined) return refused;
    const { configSources, ...start } = options;
    try {
      start.command = nextMasterCommand(configSources, start.command);
    } catch (error) {
      return messageOf(error);
    }
    try {
      this.newMaster = effects.startUpgrade(start);
    } catch (error) {
      if (!(error instanceof UpgradeRefused)) throw error;
      return error.message;
    }
    this.held = this.newMaster.oldbin;
    this.lastError = undefined;
    return undefined;
  }

  /** This master became ready and wrote `pidfile`. */
  holding(pidfile: string): void {
    this.held = pidfile;
  }

  /** The new master's ready-pipe message. */
  onReady(pid: number, message: ReadyMessage): void {
    if (this.newMaster?.pid === pid) this.newMaster.onReadyMessage(message);
  }

  /**
   * The new master `pid` exited: this master serves again, back on `prefork.pid`. False when
   * `pid` was not its new master.
   */
  onNewMasterExit(pid: number, code: number | null, signal: NodeJS.Signals | null): boolean {
    const newMaster = this.newMaster;
    if (newMaster?.pid !== pid) return false;
    this.newMaster = undefined;
    this.lastError = newMaster.failure;
    this.held = newMaster.onExit(code, signal);
    return true;
  }

  /** Each tick: the new master's ready deadline, and the old master seen gone (cleaned up after). */
  tick(now: number, pidfile: string, logger: Logger): void {
    const gone = this.oldMaster?.noticeGone(pidfile);
    if (gone !== undefined) logger[gone.level](gone.message);
    this.newMaster?.checkReadyDeadline(now);
  }

  /** The other master of an upgrade in flight (the new one, or the old one still alive). */
  peerPid(): number | undefined {
    if (this.newMaster !== undefined) return this.newMaster.pid;
    return this.oldMaster?.alive() ? this.oldMaster.pid : undefined;
  }

  /** Who else holds this master's sockets as it exits (their Unix socket files must stay). */
  sharers(): SocketSharers {
    return {
      newMaster: this.newMaster && { binds: this.newMaster.binds },
      oldMasterAlive: this.oldMasterAlive(),
    };
  }
}
