import {
  HISTOGRAM_BUCKETS,
  LATENCY_BOUNDS,
  type RequestFigures,
  STATUS_CLASSES,
} from '../protocol/figures.js';

/** Figures of no request at all. */
export function emptyFigures(): RequestFigures {
  return {
    codes: STATUS_CLASSES.map(() => 0),
    buckets: [...LATENCY_BOUNDS.map(() => 0), 0],
    seconds: 0,
  };
}

/** The bucket a latency falls in: the first bound it does not exceed (binary search), or +Inf. */
function bucketOf(seconds: number): number {
  let low = 0;
  let high = LATENCY_BOUNDS.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (seconds > (LATENCY_BOUNDS[mid] as number)) low = mid + 1;
    else high = mid;
  }
  return low;
}

/**
 * Counts one response: its status class (a status outside 100–599 counts as 5xx: the client
 * got no valid answer) and its latency bucket.
 */
export function recordResponse(figures: RequestFigures, status: number, seconds: number): void {
  const cls = status >= 100 && status < 600 ? Math.floor(status / 100) - 1 : 4;
  figures.codes[cls] = (figures.codes[cls] ?? 0) + 1;
  const bucket = bucketOf(seconds);
  figures.buckets[bucket] = (figures.buckets[bucket] ?? 0) + 1;
  figures.seconds += seconds;
}

/** Adds `more` into `into`, class by class and bucket by bucket; returns `into`. */
export function addFigures(into: RequestFigures, more: RequestFigures): RequestFigures {
  for (let i = 0; i < into.codes.length; i += 1) {
    into.codes[i] = (into.codes[i] ?? 0) + (more.codes[i] ?? 0);
  }
  for (let i = 0; i < into.buckets.length; i += 1) {
    into.buckets[i] = (into.buckets[i] ?? 0) + (more.buckets[i] ?? 0);
  }
  into.seconds += more.seconds;
  return into;
}

/**
 * What was counted between `before` and `after` (two readings of the same counters); a count
 * that went down (a reading from a master that restarted) counts as zero.
 */
export function figuresSince(after: RequestFigures, before: RequestFigures): RequestFigures {
  const minus = (a: number[], b: number[]) => a.map((n, i) => Math.max(0, n - (b[i] ?? 0)));
  return {
    codes: minus(after.codes, before.codes),
    buckets: minus(after.buckets, before.buckets),
    seconds: Math.max(0, after.seconds - before.seconds),
  };
}

/** Responses counted in `figures`. */
export function responsesIn(figures: RequestFigures): number {
  return figures.codes.reduce((sum, n) => sum + n, 0);
}

/** The share of responses that were 5xx, 0 to 1 (0 with no response). */
export function errorShare(figures: RequestFigures): number {
  const total = responsesIn(figures);
  return total === 0 ? 0 : (figures.codes[4] ?? 0) / total;
}

/**
 * The `q` quantile (0–1) of the latencies counted, in seconds, as Prometheus's
 * `histogram_quantile` estimates it: linear within the bucket it falls in (whose bounds are
 * about 25% apart), the highest finite bound when it falls in +Inf; undefined with no response.
 */
export function latencyQuantile(figures: RequestFigures, q: number): number | undefined {
  const total = figures.buckets.reduce((sum, n) => sum + n, 0);
  if (total === 0) return undefined;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < figures.buckets.length; i += 1) {
    const count = figures.buckets[i] ?? 0;
    if (count > 0 && below + count >= rank) {
      if (i >= LATENCY_BOUNDS.length) return LATENCY_BOUNDS.at(-1);
      const low = i === 0 ? 0 : (LATENCY_BOUNDS[i - 1] as number);
      const high = LATENCY_BOUNDS[i] as number;
      return low + (high - low) * ((rank - below) / count);
    }
    below += count;
  }
  return LATENCY_BOUNDS.at(-1);
}

/**
 * The histogram `/metrics` exposes: cumulative counts at each {@link HISTOGRAM_BUCKETS} bound,
 * then +Inf (every response), summed from the finer buckets workers count in.
 */
export function histogramOf(figures: RequestFigures): { le: number | '+Inf'; count: number }[] {
  const out: { le: number | '+Inf'; count: number }[] = [];
  let cumulative = 0;
  let next = 0;
  for (const le of HISTOGRAM_BUCKETS) {
    while (next < LATENCY_BOUNDS.length && (LATENCY_BOUNDS[next] as number) <= le) {
      cumulative += figures.buckets[next] ?? 0;
      next += 1;
    }
    out.push({ le, count: cumulative });
  }
  for (; next < figures.buckets.length; next += 1) cumulative += figures.buckets[next] ?? 0;
  out.push({ le: '+Inf', count: cumulative });
  return out;
}

/**
 * Whether `value` has the shape of {@link RequestFigures} (arrays of the right lengths, finite
 * numbers): what a worker or another master sends is checked before it is added up.
 */
export function isFigures(value: unknown): value is RequestFigures {
  const f = value as RequestFigures | undefined;
  const counts = (a: unknown, length: number) =>
    Array.isArray(a) && a.length === length && a.every((n) => Number.isFinite(n) && n >= 0);
  return (
    typeof f === 'object' &&
    f !== null &&
    counts(f.codes, STATUS_CLASSES.length) &&
    counts(f.buckets, LATENCY_BOUNDS.length + 1) &&
    Number.isFinite(f.seconds)
  );
}
