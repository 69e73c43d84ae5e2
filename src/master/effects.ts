import { processRss } from '../process/alive.js';
import type { MasterMessage } from '../protocol/index.js';
import { NewMaster, type StartUpgradeOptions } from '../upgrade/old-master-side.js';
import {
  type SpawnWorkerOptions,
  sendWorker,
  signalWorker,
  spawnWorker,
  type WorkerRecord,
} from './worker-process.js';

/**
 * What a master does to the world beyond its own state: spawn and signal workers, start a new
 * master, read the clock, retitle itself, exit. The master's decisions (reconcile, generations,
 * an abandoned reload, crash backoff) are made against this interface, so unit tests replace
 * it with one that records the actions and drive the master through events, with no process.
 */
export interface MasterEffects {
  now(): number;
  spawnWorker(options: SpawnWorkerOptions): WorkerRecord;
  signalWorker(worker: WorkerRecord, signal: NodeJS.Signals): void;
  /** Sends a Node worker a message on its IPC channel. */
  sendWorker(worker: WorkerRecord, message: MasterMessage): void;
  startUpgrade(options: StartUpgradeOptions): NewMaster;
  setTitle(title: string): void;
  exit(code: number): void;
  /** Resident memory of a process (an exec worker, which cannot report its own). */
  processRss(pid: number): number;
}

/** The real effects: processes, `Date.now()`, `process.title`, `process.exit`. */
export const realEffects: MasterEffects = {
  now: () => Date.now(),
  spawnWorker,
  signalWorker,
  sendWorker,
  startUpgrade: (options) => NewMaster.start(options),
  setTitle: (title) => {
    process.title = title;
  },
  exit: (code) => process.exit(code),
  processRss,
};
