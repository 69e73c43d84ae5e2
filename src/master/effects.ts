import { NewMaster, type StartUpgradeOptions } from '../handover/new-master.js';
import { processRss } from '../process/alive.js';
import { sendOnChannel, signalWorker } from '../worker-kind/node-worker.js';
import type { WorkerActions } from '../worker-kind/worker-kind.js';
import type { SpawnWorkerOptions, WorkerRecord } from '../worker-kind/worker-record.js';

/**
 * What a master does to the world beyond its own state: spawn and signal workers, start a new
 * master, read the clock, retitle itself, exit. The master's decisions (reconcile, generations,
 * an abandoned reload, crash backoff) are made against this interface, so unit tests replace
 * it with one that records the actions and drive the master through events, with no process.
 */
export interface MasterEffects extends WorkerActions {
  now(): number;
  /** Spawns a worker of `options.kind`. */
  spawnWorker(options: SpawnWorkerOptions): WorkerRecord;
  startUpgrade(options: StartUpgradeOptions): NewMaster;
  setTitle(title: string): void;
  exit(code: number): void;
}

/** The real effects: processes, `Date.now()`, `process.title`, `process.exit`. */
export const realEffects: MasterEffects = {
  now: () => Date.now(),
  spawnWorker: (options) => options.kind.spawn(options),
  signalWorker,
  sendWorker: sendOnChannel,
  startUpgrade: (options) => NewMaster.start(options),
  setTitle: (title) => {
    process.title = title;
  },
  exit: (code) => process.exit(code),
  processRss,
};
