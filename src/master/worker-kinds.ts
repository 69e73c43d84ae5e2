import { execWorker } from '../exec/exec-worker.js';
import type { Release } from '../release/read-release.js';
import { nodeWorker } from '../worker-kind/node-worker.js';
import type { WorkerKind } from '../worker-kind/worker-kind.js';

/** The kind of worker a release runs as: the one place that maps a release to its kind. */
export function kindOf(release: Release): WorkerKind {
  return release.kind === 'exec' ? execWorker : nodeWorker;
}
