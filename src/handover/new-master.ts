import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { messageOf } from '../errors/index.js';
import { onChannelClosed } from '../process/channel-closed.js';
import { deliverHandlelessMessages } from '../process/handleless-messages.js';
import { oldbinPath } from '../protocol/files.js';
import type { ReadyMessage } from '../protocol/handover.js';
import type { PeerHooks } from '../protocol/moves.js';
import { movePidfileIfOurs, writePidfile } from '../state/pidfile.js';
import type { ListenSocket } from './listen-sockets.js';
import { type MasterCommand, spawnMaster } from './spawn-master.js';

/**
 * How long past `bootTimeout` a new master may take to report ready before its old master
 * kills it: the new master loads its configuration and release, opens the sockets and its
 * control socket, and only then boots its workers, each of which it gives `bootTimeout`.
 */
export const NEW_MASTER_READY_MARGIN_MS = 10_000;
/** How long after a new master exits its ready-pipe message may still arrive. */
const READY_AFTER_EXIT_MS = 1000;

/** What the new master of an upgrade does that its old master's loop reacts to. */
export type NewMasterEvent =
  | { kind: 'new-master-ready'; pid: number; message: ReadyMessage }
  | { kind: 'new-master-exit'; pid: number; code: number | null; signal: NodeJS.Signals | null };

/** What starting an upgrade needs. */
export interface StartUpgradeOptions {
  /** How the old master was started: the new one starts the same way. */
  command: MasterCommand;
  /** The listen sockets to hand over (fd 3, 4, ...). */
  sockets: ListenSocket[];
  /** `prefork.pid`: moved to `.oldbin` now, and back if the upgrade fails. */
  pidfile: string;
  /** `bootTimeout` (s): the new master is killed if not ready this + the margin after `now`. */
  bootTimeoutS: number;
  /** The time of USR2 (ms since the epoch, on the master's clock). */
  now: number;
  logger: Logger;
  /** Queues an event for the old master's loop. */
  onEvent: (event: NewMasterEvent) => void;
  /**
   * The old master runs in the foreground of a terminal: the new one goes to a session of its
   * own, out of reach of the terminal's signals ({@link spawnMaster}).
   */
  interactive: boolean;
  /** A canary deploy's first step: the new master starts with this many workers. */
  canaryWorkers?: number | undefined;
  /** The IPC channel to the new master, on which connections move. */
  peer?: PeerHooks | undefined;
}

/** USR2 could not start an upgrade; nothing was changed. */
export class UpgradeRefused extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UpgradeRefused';
  }
}

/**
 * The old master's side of an upgrade, from USR2 to the new master's exit: the pidfile moved
 * to `.oldbin` and back, the new master spawned with the sockets, its ready message handled
 * before its exit (they arrive on different handles, in either order), the binds it serves,
 * why it failed, and a bounded wait: a new master not ready in time is killed.
 */
export class NewMaster {
  /** Binds the new master serves, from its ready message; undefined until it is ready. */
  binds: ReadonlySet<string> | undefined;
  /** Why it failed (its own report, or why it was killed); undefined while all is well. */
  failure: string | undefined;
  private readyBy: number | undefined;

  private constructor(
    private readonly process: ChildProcess,
    readonly pid: number,
    private readonly options: StartUpgradeOptions,
  ) {
    this.readyBy = options.now + options.bootTimeoutS * 1000 + NEW_MASTER_READY_MARGIN_MS;
  }

  /** The pidfile the old master holds while the new one runs. */
  get oldbin(): string {
    return oldbinPath(this.options.pidfile);
  }

  /**
   * Moves the pidfile to `.oldbin` and spawns the new master. Throws {@link UpgradeRefused}
   * (the pidfile back in place) when either cannot be done.
   */
  static start(options: StartUpgradeOptions): NewMaster {
    const oldbin = oldbinPath(options.pidfile);
    try {
      if (!movePidfileIfOurs(options.pidfile, oldbin, process.pid)) {
        writePidfile(oldbin, process.pid);
      }
    } catch (error) {
      throw new UpgradeRefused(`cannot rename the pidfile to ${oldbin}: ${messageOf(error)}`, {
        cause: error,
      });
    }
    const spawned = spawnMaster(options.command, {
      sockets: options.sockets,
      oldMasterPid: process.pid,
      canaryWorkers: options.canaryWorkers,
      newSession: options.interactive,
      stdout: 'inherit',
      stderr: 'inherit',
    });
    const pid = spawned.process.pid;
    if (pid === undefined) {
      restorePidfile(options.pidfile, options.logger);
      throw new UpgradeRefused('the new master could not be spawned');
    }
    const newMaster = new NewMaster(spawned.process, pid, options);
    linkPeer(spawned.process, pid, options.peer);
    const reported = spawned.ready.then((message) => {
      if (message) options.onEvent({ kind: 'new-master-ready', pid, message });
    });
    // Its exit is handled after what it wrote on the ready pipe (why it failed), never before.
    // The pipe closes when it exits at the latest; the timeout only guards against a pipe held
    // open by something else.
    spawned.process.on('exit', (code, signal) => {
      void Promise.race([reported, sleep(READY_AFTER_EXIT_MS, undefined, { ref: false })]).then(
        () => options.onEvent({ kind: 'new-master-exit', pid, code, signal }),
      );
    });
    options.logger.info({ newMaster: pid }, `upgrade: started new master with pid: ${pid}`);
    return newMaster;
  }

  /** Its ready-pipe message: ready with its binds, or why it never will be. */
  onReadyMessage(message: ReadyMessage): void {
    this.readyBy = undefined;
    if (message.ready) {
      this.binds = new Set(message.binds);
      this.options.logger.info(
        { newMaster: this.pid, version: message.version, protocol: message.protocol },
        `new master ${this.pid} is ready`,
      );
    } else {
      this.failure = message.error;
      this.options.logger.error(
        { newMaster: this.pid },
        `new master ${this.pid} failed to start: ${message.error}`,
      );
    }
  }

  /**
   * Kills the new master once it is past its ready deadline (SIGKILL: a master that is hung,
   * or stopped, handles nothing else). Its workers see their IPC channel close and drain; its
   * exit then gives the service back to the old master.
   */
  checkReadyDeadline(now: number): void {
    if (this.readyBy === undefined || now < this.readyBy) return;
    this.readyBy = undefined;
    const { bootTimeoutS } = this.options;
    this.failure = `it was not ready within ${bootTimeoutS} s (bootTimeout) + ${NEW_MASTER_READY_MARGIN_MS / 1000} s: killed it`;
    this.options.logger.error(
      { newMaster: this.pid },
      `new master ${this.pid} was not ready within bootTimeout (${bootTimeoutS} s) + ${NEW_MASTER_READY_MARGIN_MS / 1000} s: killing it`,
    );
    try {
      this.process.kill('SIGKILL');
    } catch {
      // exited meanwhile: its exit event is on the way
    }
  }

  /**
   * The new master exited: the old master takes the service back, as nginx does. Restores
   * `prefork.pid` and returns the pidfile the old master holds now.
   */
  onExit(code: number | null, signal: NodeJS.Signals | null): string {
    this.readyBy = undefined;
    this.options.logger.warn(
      { newMaster: this.pid },
      `new master ${this.pid} exited (${signal ? `signal ${signal}` : `code ${code}`}): this master serves again`,
    );
    return restorePidfile(this.options.pidfile, this.options.logger);
  }
}

/** Hooks `peer` to the IPC channel of the new master `child`. */
function linkPeer(child: ChildProcess, pid: number, peer: PeerHooks | undefined): void {
  if (peer === undefined || typeof child.send !== 'function') return;
  deliverHandlelessMessages(child); // a connection whose fd did not arrive: refused
  child.on('message', (raw, handle) => peer.onMessage(raw, handle));
  onChannelClosed(child, () => peer.onGone());
  peer.onLink({
    pid,
    send: (message, handle) => {
      if (!child.connected) return false;
      child.send(message, handle as never, {}, () => {});
      return true;
    },
  });
}

/** Moves `.oldbin` back to `pidfile` (or writes it); returns the pidfile this master holds. */
function restorePidfile(pidfile: string, logger: Logger): string {
  const oldbin = oldbinPath(pidfile);
  try {
    if (!movePidfileIfOurs(oldbin, pidfile, process.pid)) writePidfile(pidfile, process.pid);
    return pidfile;
  } catch (error) {
    logger.error(`cannot restore the pidfile ${pidfile}: ${messageOf(error)}`);
    return oldbin;
  }
}
