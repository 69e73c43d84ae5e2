/** Why a worker exited, as `prefork_worker_exits_total{reason}` counts it (docs/metrics.md). */
export const WORKER_EXIT_REASONS = [
  'drained',
  'recycled',
  'stopped',
  'crashed',
  'boot_failed',
  'hung',
  'killed',
] as const;
export type WorkerExitReason = (typeof WORKER_EXIT_REASONS)[number];
