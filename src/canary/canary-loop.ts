import type { Config } from '../config/schema.js';
import { queryMaster } from '../control/client.js';
import type { HealthTarget } from '../probes/health.js';
import { setWorkerCount, waitReadyWorkers } from '../probes/worker-count.js';
import { type CanaryRecord, describeSide } from './verdict.js';
import { observeStep } from './window.js';

/** What a canary run needs from the deploy that runs it. */
export interface CanaryRun {
  config: Config;
  /** The new release's worker count at each step. */
  steps: number[];
  newSide: { pid: number; release: string };
  /** The old master, its release, and its worker count when the deploy started. */
  oldSide: { pid: number; release: string; workers: number };
  health: HealthTarget | undefined;
  signal?: AbortSignal | undefined;
  /** Runs one step of the deploy (journaled and reported by the deploy): `canary`, `full-count`. */
  step(id: 'canary' | 'full-count', title: string, run: () => Promise<void>): Promise<void>;
  /** A line of information (with fields for `--json`). */
  info(message: string, fields: Record<string, unknown>): void;
  /** Each judged step, as it is judged (the deploy journals it). */
  record(judged: CanaryRecord): void;
}

/**
 * The canary steps (docs/canary.md): each judged over `--canary-window` against the old
 * release serving on the same sockets, capacity moved between them by TTIN to the new master
 * and TTOU to the old one; then the new master is brought to its full count. Throws at the
 * first step that fails or has no data.
 */
export async function runCanary(run: CanaryRun): Promise<void> {
  const { config, steps, newSide, oldSide, signal } = run;
  const full = oldSide.workers;
  const limits = {
    maxErrorRate: config.canaryMaxErrorRate,
    maxP99Ratio: config.canaryMaxP99Ratio,
    minRequests: config.canaryMinRequests,
  };
  const readyMs = config.readyTimeout * 1000;
  for (const [i, workers] of steps.entries()) {
    const label = `canary step ${i + 1}/${steps.length}`;
    const oldWorkers = i === 0 ? full : Math.max(1, full - workers);
    if (i > 0) {
      await run.step(
        'canary',
        `${label}: move capacity: TTIN new master to ${workers}, TTOU old master to ${oldWorkers}`,
        async () => {
          // The new workers take traffic before the old ones stop: capacity never dips.
          await setWorkerCount(config.root, newSide.pid, workers, { signal });
          await waitReadyWorkers(config.root, newSide.pid, workers, readyMs, signal);
          await setWorkerCount(config.root, oldSide.pid, oldWorkers, { signal });
        },
      );
    }
    await run.step(
      'canary',
      `${label}: judge ${newSide.release} (${workers} worker(s)) against ${oldSide.release} (${oldWorkers}) for ${config.canaryWindow} s`,
      async () => {
        const verdict = await observeStep({
          root: config.root,
          newSide: { pid: newSide.pid, release: newSide.release },
          oldSide: { pid: oldSide.pid, release: oldSide.release },
          windowMs: config.canaryWindow * 1000,
          limits,
          health: run.health,
          signal,
          onExtend: (short) =>
            run.info(
              `${label}: too little traffic (${short.reasons.join('; ')}): extending the window once by ${config.canaryWindow} s`,
              { event: 'canary-extend', step: i + 1, of: steps.length, ...short },
            ),
        });
        const judged = { step: i + 1, of: steps.length, at: new Date().toISOString(), ...verdict };
        run.record(judged);
        const line = `${label} ${verdict.verdict}: ${describeSide(verdict.new)}; ${describeSide(verdict.old)}`;
        run.info(verdict.reasons.length > 0 ? `${line} (${verdict.reasons.join('; ')})` : line, {
          event: 'canary',
          ...judged,
        });
        if (verdict.verdict === 'no-data') {
          throw new Error(`${label}: no data: ${verdict.reasons.join('; ')}`);
        }
        if (verdict.verdict === 'fail') {
          throw new Error(`${label} failed: ${verdict.reasons.join('; ')}`);
        }
      },
    );
  }
  await run.step('full-count', `TTIN new master ${newSide.pid} to its full count`, async () => {
    const status = await queryMaster(config.root, newSide.pid);
    if (status === undefined) throw new Error(`the new master ${newSide.pid} stopped answering`);
    const target = status.configuredWorkers ?? full;
    await setWorkerCount(config.root, newSide.pid, target, { signal });
    await waitReadyWorkers(config.root, newSide.pid, target, readyMs, signal);
  });
}
