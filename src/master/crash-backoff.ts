/** Delay before the first respawn after a crash loop starts, doubled per crash. */
const BASE_MS = 100;
/** Longest delay between respawns. */
const CAP_MS = 10_000;
/** A worker that lived this long did not crash-loop: the streak starts again. */
const HEALTHY_MS = 10_000;

/**
 * Exponential backoff for respawning workers that die young. The first death is replaced at
 * once; each further death of a worker that lived less than {@link HEALTHY_MS} doubles the
 * delay, up to {@link CAP_MS}.
 */
export class CrashBackoff {
  private streak = 0;

  /** Records a worker death; returns how long to wait before the next spawn. */
  recordDeath(livedMs: number): number {
    this.streak = livedMs >= HEALTHY_MS ? 1 : this.streak + 1;
    return this.delay();
  }

  /** A worker became ready and stayed: forget the streak. */
  recordHealthy(): void {
    this.streak = 0;
  }

  /** Deaths in a row. */
  get deaths(): number {
    return this.streak;
  }

  /** Current delay before a spawn. */
  delay(): number {
    if (this.streak <= 1) return 0;
    return Math.min(CAP_MS, BASE_MS * 2 ** (this.streak - 2));
  }
}

export const CRASH_HEALTHY_MS = HEALTHY_MS;
