import { errorShare, latencyQuantile, responsesIn } from '../figures/figures.js';
import type { RequestFigures } from '../protocol/figures.js';

/** The thresholds of a canary step (`--canary-*`). */
export interface CanaryLimits {
  /** Percentage points of 5xx the new release may add to the old one's share. */
  maxErrorRate: number;
  /** How many times the old release's p99 the new one's may be. */
  maxP99Ratio: number;
  /** Responses each side needs in the window for a verdict on figures. */
  minRequests: number;
}

/**
 * A p99 of the new release below this is not held against the old one's: at a few
 * milliseconds a timer tick, a GC pause or a worker's first (unoptimised) requests make ratios
 * meaningless (docs/canary.md).
 */
export const P99_FLOOR_S = 0.005;

/** What one release did in a step's window. */
export interface SideFigures {
  release: string;
  /** Its workers serving at the end of the window. */
  workers: number;
  /** Responses, 5xx share (%) and p99 (ms); null when not counted (an exec release). */
  requests: number | null;
  errorRate: number | null;
  p99Ms: number | null;
  /** Its workers that crashed, hung or failed to boot. */
  crashes: number;
}

/** One side's figures over a window, as measured. */
export interface SideWindow {
  release: string;
  workers: number;
  /** Counted in the window; undefined for a release prefork does not count (exec). */
  figures: RequestFigures | undefined;
  crashes: number;
}

/** The verdict on one step. */
export interface StepVerdict {
  verdict: 'pass' | 'fail' | 'no-data';
  /** Why it failed, or what it was judged on. */
  reasons: string[];
  /** `figures`: 5xx, p99 and crashes; `crashes-and-health`: an exec release, counted by nobody. */
  judgedOn: 'figures' | 'crashes-and-health';
  new: SideFigures;
  old: SideFigures;
}

/** One judged step of a canary deploy, as the deploy journal records it (docs/canary.md). */
export type CanaryRecord = StepVerdict & { step: number; of: number; at: string };

function sideFigures(side: SideWindow): SideFigures {
  const { figures } = side;
  const p99 = figures === undefined ? undefined : latencyQuantile(figures, 0.99);
  return {
    release: side.release,
    workers: side.workers,
    requests: figures === undefined ? null : responsesIn(figures),
    errorRate: figures === undefined ? null : round(errorShare(figures) * 100, 2),
    p99Ms: p99 === undefined ? null : round(p99 * 1000, 2),
    crashes: side.crashes,
  };
}

function round(n: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/**
 * Judges the new release against the old one over the same window (docs/canary.md): any
 * crash fails; with figures on both sides, fewer than `minRequests` on either is "no data",
 * else the 5xx share may exceed the old one's by `maxErrorRate` points and the p99 may be
 * `maxP99Ratio` times the old one's (above {@link P99_FLOOR_S}). Without figures (an exec
 * release) crashes are all there is to judge here; health checks are judged as they happen.
 */
export function judgeStep(
  newSide: SideWindow,
  oldSide: SideWindow,
  limits: CanaryLimits,
): StepVerdict {
  const next = sideFigures(newSide);
  const old = sideFigures(oldSide);
  const counted = newSide.figures !== undefined && oldSide.figures !== undefined;
  const judgedOn = counted ? 'figures' : 'crashes-and-health';
  const reasons: string[] = [];
  if (next.crashes > 0) {
    reasons.push(`${next.crashes} worker(s) of ${next.release} crashed`);
    return { verdict: 'fail', reasons, judgedOn, new: next, old };
  }
  if (!counted) {
    reasons.push('exec release: judged on crashes and health checks only');
    return { verdict: 'pass', reasons, judgedOn, new: next, old };
  }
  const tooFew = [next, old].filter((s) => (s.requests ?? 0) < limits.minRequests);
  if (tooFew.length > 0) {
    for (const s of tooFew) {
      reasons.push(
        `${s.release} answered ${s.requests} requests, fewer than --canary-min-requests ${limits.minRequests}`,
      );
    }
    return { verdict: 'no-data', reasons, judgedOn, new: next, old };
  }
  const errors = (next.errorRate ?? 0) - (old.errorRate ?? 0);
  if (errors > limits.maxErrorRate) {
    reasons.push(
      `5xx ${next.errorRate}% vs ${old.errorRate}%: +${round(errors, 2)} points, more than --canary-max-error-rate ${limits.maxErrorRate}`,
    );
  }
  const newP99 = next.p99Ms ?? 0;
  const oldP99 = old.p99Ms ?? 0;
  if (newP99 > P99_FLOOR_S * 1000 && newP99 > limits.maxP99Ratio * oldP99) {
    const ratio = oldP99 > 0 ? `${round(newP99 / oldP99, 2)}×` : 'against none';
    reasons.push(
      `p99 ${newP99} ms vs ${oldP99} ms: ${ratio}, more than --canary-max-p99-ratio ${limits.maxP99Ratio}`,
    );
  }
  return { verdict: reasons.length > 0 ? 'fail' : 'pass', reasons, judgedOn, new: next, old };
}

/** z of a two-sided 99% confidence interval. */
const Z_99 = 2.576;

/**
 * The lower bound of the Wilson score interval (99%) of a share: with `errors` of `n`, the
 * true share is at least this, but for a 1-in-200 chance.
 */
export function shareLowerBound(errors: number, n: number): number {
  if (n === 0) return 0;
  const p = errors / n;
  const z2 = Z_99 * Z_99;
  const centre = p + z2 / (2 * n);
  const spread = Z_99 * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return Math.max(0, (centre - spread) / (1 + z2 / n));
}

/**
 * Before the window ends: a verdict only when the new release already fails beyond doubt — a
 * crash, or a 5xx share whose 99% lower bound exceeds the old share by more than the limit,
 * on at least `minRequests` each — so that a bad canary's exposure is the few requests that
 * proved it bad, not a whole window of them. Undefined: keep watching.
 */
export function earlyVerdict(
  newSide: SideWindow,
  oldSide: SideWindow,
  limits: CanaryLimits,
): StepVerdict | undefined {
  if (newSide.crashes > 0) return judgeStep(newSide, oldSide, limits);
  if (newSide.figures === undefined || oldSide.figures === undefined) return undefined;
  const n = responsesIn(newSide.figures);
  if (n < limits.minRequests || responsesIn(oldSide.figures) < limits.minRequests) return undefined;
  const lower = shareLowerBound(newSide.figures.codes[4] ?? 0, n) * 100;
  const old = errorShare(oldSide.figures) * 100;
  if (lower - old <= limits.maxErrorRate) return undefined;
  const verdict = judgeStep(newSide, oldSide, limits);
  return verdict.verdict === 'fail' ? verdict : undefined;
}

/** One side in a line: `v2 (1 worker): 1523 req, 0% 5xx, p99 4.1 ms, 0 crashes`. */
export function describeSide(side: SideFigures): string {
  const workers = `${side.workers} worker${side.workers === 1 ? '' : 's'}`;
  const counted =
    side.requests === null
      ? 'not counted (exec)'
      : `${side.requests} req, ${side.errorRate}% 5xx, p99 ${side.p99Ms ?? '-'} ms`;
  return `${side.release} (${workers}): ${counted}, ${side.crashes} crash${side.crashes === 1 ? '' : 'es'}`;
}
