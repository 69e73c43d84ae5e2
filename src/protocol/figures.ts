/** What workers count their requests in: latency buckets and status classes, fixed so that figures from any worker of any master add up bucket by bucket. */

/**
 * Upper bounds, in seconds, of the request-duration histogram `/metrics` exposes (Prometheus's
 * defaults); a last bucket, +Inf, takes the rest. Each is one of {@link LATENCY_BOUNDS}.
 */
export const HISTOGRAM_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

/** One decade of {@link LATENCY_BOUNDS}: no two neighbours more than 1.34× apart. */
const DECADE = [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7.5] as const;

/**
 * Upper bounds, in seconds, of the buckets workers count latencies in: 0.1 ms to 10 s, about
 * 25% apart, fine enough for a canary to compare two p99s (docs/canary.md), and holding every
 * {@link HISTOGRAM_BUCKETS} bound so the exposed histogram is a sum of them. Fixed, so figures
 * from any worker of any master add up bucket by bucket.
 */
export const LATENCY_BOUNDS: readonly number[] = [
  ...[-4, -3, -2, -1, 0].flatMap((exp) =>
    DECADE.map((m) => Number((m * 10 ** exp).toPrecision(3))),
  ),
  10,
];

/** The status classes responses are counted by, in the order of {@link RequestFigures.codes}. */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/**
 * What a Node worker's requests came to since it started (cumulative, like the counters they
 * become): responses by status class and by latency.
 */
export interface RequestFigures {
  /** Responses per {@link STATUS_CLASSES} entry. */
  codes: number[];
  /** Responses per latency bucket, not cumulative: one per {@link LATENCY_BOUNDS} bound, then +Inf. */
  buckets: number[];
  /** Seconds spent answering, summed over those responses. */
  seconds: number;
}
