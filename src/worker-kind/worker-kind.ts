import type { MasterMessage } from '../protocol/ipc.js';
import type { SpawnWorkerOptions, WorkerRecord } from './worker-record.js';

/** What a master does to one worker process (spawn aside): the parts tests replace. */
export interface WorkerActions {
  signalWorker(worker: WorkerRecord, signal: NodeJS.Signals): void;
  sendWorker(worker: WorkerRecord, message: MasterMessage): void;
  /** Resident memory of a process, from `/proc`. */
  processRss(pid: number): number;
}

/** What a worker's kind says when the master looks at it on a tick. */
export interface TickNews {
  /** It is ready now, by a rule of its kind (an exec release's `ready: {afterMs}`). */
  ready?: boolean;
  /** Its RSS was read again (check it against `maxMemory`). */
  rssRead?: boolean;
}

/**
 * A kind of worker: a Node worker (the app loaded in-process, an IPC channel to its master) or
 * an exec release's program (systemd's protocols: sockets by fd, `sd_notify`, the watchdog).
 * Everything the master does that depends on the kind goes through this, so the master holds
 * no branch on it; a new kind is a new implementation (docs/architecture.md).
 */
export interface WorkerKind {
  readonly name: 'node' | 'exec';
  /** Starts a worker process: booting, until it says it is ready. */
  spawn(options: SpawnWorkerOptions): WorkerRecord;
  /** The signal that drains it (QUIT, or an exec release's `stopSignal`). */
  stopSignal(worker: WorkerRecord): NodeJS.Signals;
  /**
   * How long a ready worker may stay silent before it is killed as hung, and what that
   * silence means; undefined when it sends nothing to go by.
   */
  silenceLimit(
    worker: WorkerRecord,
    heartbeatTimeoutS: number,
  ): { s: number; why: string } | undefined;
  /** Why a worker still booting at `bootTimeout` is killed (`within` says the bound). */
  notReadyReason(worker: WorkerRecord, within: string): string;
  /** What it last said, to quote when it dies (`` when there is nothing worth quoting). */
  lastWords(worker: WorkerRecord): string;
  /** USR1: pass log reopening on, if the worker writes its own log. */
  reopenLogs(worker: WorkerRecord, actions: WorkerActions): void;
  /** Sends a message on its channel; false when it has none (it cannot be told). */
  tell(worker: WorkerRecord, message: MasterMessage, actions: WorkerActions): boolean;
  /** Can it GET a path from its own app when asked (control request `health`)? */
  readonly answersHealthChecks: boolean;
  /** What the master must find out itself, each tick. */
  onTick(worker: WorkerRecord, now: number, actions: WorkerActions): TickNews;
}
