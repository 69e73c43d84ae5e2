import type { Logger } from 'pino';

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

/**
 * When the master may spawn again, and how many at once: the whole shortfall normally, one at a
 * time once workers crash-loop, each after the backoff's delay.
 */
export class SpawnPacing {
  private readonly backoff = new CrashBackoff();
  private nextAt = 0;

  /** Spawning is allowed now. */
  due(now: number): boolean {
    return now >= this.nextAt;
  }

  /** How many of `missing` workers to spawn this turn. */
  batch(missing: number): number {
    return this.backoff.deaths > 1 ? 1 : missing;
  }

  /** A batch was spawned: the next waits out the current delay. */
  spawned(now: number): void {
    if (this.backoff.delay() > 0) this.nextAt = now + this.backoff.delay();
  }

  /** A worker of the current generation died after `livedMs`: a crash loop is logged, paced. */
  died(livedMs: number, now: number, logger: Logger): void {
    const delay = this.backoff.recordDeath(livedMs);
    if (delay <= 0) return;
    this.nextAt = now + delay;
    logger.warn(
      { deaths: this.backoff.deaths, delayMs: delay },
      `workers are crash-looping: next spawn in ${delay} ms`,
    );
  }

  /** A current worker stayed up: the crash streak is over. */
  healthy(): void {
    if (this.backoff.deaths > 0) this.backoff.recordHealthy();
  }

  /** A new generation starts with a clean slate. */
  reset(): void {
    this.backoff.recordHealthy();
    this.nextAt = 0;
  }

  get deaths(): number {
    return this.backoff.deaths;
  }
}
