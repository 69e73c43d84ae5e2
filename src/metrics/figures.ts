import { LATENCY_BUCKETS, type RequestFigures, STATUS_CLASSES } from '../protocol/index.js';

/** Figures of no request at all. */
export function emptyFigures(): RequestFigures {
  return {
    codes: STATUS_CLASSES.map(() => 0),
    buckets: [...LATENCY_BUCKETS.map(() => 0), 0],
    seconds: 0,
  };
}

/**
 * Counts one response: its status class (a status outside 100–599 counts as 5xx: the client
 * got no valid answer) and its latency bucket.
 */
export function recordResponse(figures: RequestFigures, status: number, seconds: number): void {
  const cls = status >= 100 && status < 600 ? Math.floor(status / 100) - 1 : 4;
  figures.codes[cls] = (figures.codes[cls] ?? 0) + 1;
  let bucket = 0;
  while (bucket < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[bucket] as number)) {
    bucket += 1;
  }
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

/** Responses counted in `figures`. */
export function responsesIn(figures: RequestFigures): number {
  return figures.codes.reduce((sum, n) => sum + n, 0);
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
    counts(f.buckets, LATENCY_BUCKETS.length + 1) &&
    Number.isFinite(f.seconds)
  );
}
