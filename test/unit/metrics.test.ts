import { describe, expect, it } from 'vitest';
import type { MasterMetrics } from '../../src/control/schema.js';
import {
  addFigures,
  emptyFigures,
  figuresSince,
  histogramOf,
  latencyQuantile,
  recordResponse,
} from '../../src/figures/figures.js';
import { Exposition, servingMaster } from '../../src/metrics/exposition.js';
import type { BookWorker } from '../../src/metrics/release-book.js';
import { ReleaseBook } from '../../src/metrics/release-book.js';
import {
  HISTOGRAM_BUCKETS,
  LATENCY_BOUNDS,
  type RequestFigures,
} from '../../src/protocol/figures.js';
import { noMoves } from '../../src/protocol/moves.js';

// How a master adds up its workers' figures by release, and how the two masters of an upgrade
// add up in one scrape: pure functions and prom-client, no process.

/** Figures of `ok` 200s taking 3 ms and `failed` 503s taking 0.3 s. */
function figures(ok: number, failed = 0): RequestFigures {
  const f = emptyFigures();
  for (let i = 0; i < ok; i += 1) recordResponse(f, 200, 0.003);
  for (let i = 0; i < failed; i += 1) recordResponse(f, 503, 0.3);
  return f;
}

function worker(
  release: string,
  f: RequestFigures | undefined,
  state: BookWorker['state'] = 'ready',
): BookWorker {
  const requests = f === undefined ? 0 : f.codes.reduce((a, b) => a + b, 0);
  return {
    release: { name: release, version: `${release}.0`, kind: 'node' },
    state,
    rss: 1000,
    requests,
    figures: f,
    connections: undefined,
    closedAtDeadline: 0,
    moveCounts: undefined,
  };
}

const noDeploys = {
  outcomes: { succeeded: 0, rolled_back: 0, incomplete: 0 },
  inFlight: undefined,
};

/** The value of one sample line of an exposition, or undefined when it is absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('request figures', () => {
  it('count a response in the first bucket whose bound it does not exceed, and by status class', () => {
    const f = emptyFigures();
    recordResponse(f, 204, 0.005);
    recordResponse(f, 404, 0.0051);
    recordResponse(f, 500, 11);
    recordResponse(f, 0, 0.001);
    expect(f.codes).toEqual([0, 1, 0, 1, 2]);
    // 1 ms and 5 ms fall in the buckets bounded by exactly those; 5.1 ms in the next (6 ms).
    const at = (seconds: number) => f.buckets[LATENCY_BOUNDS.indexOf(seconds)];
    expect([at(0.001), at(0.005), at(0.006)]).toEqual([1, 1, 1]);
    expect(f.buckets.at(-1)).toBe(1);
    expect(f.buckets.reduce((a, b) => a + b, 0)).toBe(4);
    expect(f.seconds).toBeCloseTo(11.0111, 6);
    expect(addFigures(figures(2), figures(1, 1)).codes).toEqual([0, 3, 0, 0, 1]);
  });
});

describe('latency buckets', () => {
  it('are about 25% apart, and hold every bound of the exposed histogram', () => {
    for (let i = 1; i < LATENCY_BOUNDS.length; i += 1) {
      const ratio = (LATENCY_BOUNDS[i] as number) / (LATENCY_BOUNDS[i - 1] as number);
      expect(ratio).toBeGreaterThan(1.1);
      expect(ratio).toBeLessThanOrEqual(1.34);
    }
    for (const le of HISTOGRAM_BUCKETS) expect(LATENCY_BOUNDS).toContain(le);
  });

  it('give a p99 within a bucket’s width, and the exposed histogram as their sums', () => {
    const f = emptyFigures();
    // 990 answers at 2 ms, 10 at 30 ms: the p99 is the last of the 2 ms ones.
    for (let i = 0; i < 990; i += 1) recordResponse(f, 200, 0.002);
    for (let i = 0; i < 10; i += 1) recordResponse(f, 200, 0.03);
    const p99 = latencyQuantile(f, 0.99) as number;
    expect(p99).toBeGreaterThan(0.0015);
    expect(p99).toBeLessThanOrEqual(0.002);
    expect(latencyQuantile(f, 0.999) as number).toBeGreaterThan(0.025);
    expect(latencyQuantile(emptyFigures(), 0.99)).toBeUndefined();
    const histogram = histogramOf(f);
    expect(histogram.map((b) => b.le)).toEqual([...HISTOGRAM_BUCKETS, '+Inf']);
    expect(histogram.find((b) => b.le === 0.005)?.count).toBe(990);
    expect(histogram.find((b) => b.le === 0.025)?.count).toBe(990);
    expect(histogram.find((b) => b.le === 0.05)?.count).toBe(1000);
    expect(histogram.at(-1)?.count).toBe(1000);
    // Two readings of the same counters: what happened in between.
    const later = addFigures(emptyFigures(), f);
    recordResponse(later, 503, 0.002);
    expect(figuresSince(later, f).codes).toEqual([0, 0, 0, 0, 1]);
  });
});

describe('a master’s release book', () => {
  it('keeps counting across worker exits: a gone worker’s figures stay in its release', () => {
    const book = new ReleaseBook();
    const a = worker('v1', figures(10));
    const b = worker('v1', figures(5, 1));
    expect(book.releases([a, b])[0]?.figures?.codes).toEqual([0, 15, 0, 0, 1]);
    book.workerExited(b, 'crashed', 1000);
    const replacement = worker('v1', figures(0));
    const [v1] = book.releases([a, replacement]);
    expect(v1?.figures?.codes).toEqual([0, 15, 0, 0, 1]);
    expect(v1?.figures?.buckets.at(-1)).toBe(0);
    expect(v1?.exits).toEqual({ crashed: 1 });
    expect(v1?.workers).toEqual({ booting: 0, ready: 2, draining: 0 });
    // Draining and recycling: counted by reason, figures kept.
    book.workerExited(a, 'drained', 2000);
    book.workerExited(replacement, 'recycled', 2000);
    const [after] = book.releases([]);
    expect(after?.figures?.codes).toEqual([0, 15, 0, 0, 1]);
    expect(after?.exits).toEqual({ crashed: 1, drained: 1, recycled: 1 });
  });

  it('keeps the figures of at most four releases with no worker left, the latest ones', () => {
    const book = new ReleaseBook();
    for (let i = 1; i <= 6; i += 1) book.workerExited(worker(`v${i}`, figures(i)), 'drained', i);
    const names = book.releases([worker('v9', figures(1))]).map((r) => r.release);
    expect(names).toEqual(['v9', 'v3', 'v4', 'v5', 'v6']);
  });

  it('reports each Node release’s request rate and 5xx share over the traffic window', () => {
    const book = new ReleaseBook();
    expect(book.traffic()).toEqual([]);
    book.sample([worker('v1', figures(100))], 0);
    book.sample([worker('v1', figures(150))], 500); // too soon: not a sample
    book.sample([worker('v1', figures(300, 100))], 2000);
    const exec: BookWorker = {
      ...worker('x1', undefined),
      release: { name: 'x1', version: '1', kind: 'exec' },
    };
    book.sample([worker('v1', figures(300, 100)), exec], 2500);
    book.sample([worker('v1', figures(300, 100)), exec], 4000);
    expect(book.traffic()).toEqual([
      { release: 'v1', rate: 75, errorShare: 100 / 300, windowS: 4 },
    ]);
  });
});

describe('the exposition of two masters', () => {
  const old: MasterMetrics = {
    pid: 10,
    state: 'old',
    release: 'v1',
    version: '1.0.0',
    releases: [
      {
        release: 'v1',
        version: '1.0.0',
        kind: 'node',
        workers: { booting: 0, ready: 2, draining: 1 },
        rss: 2e6,
        exits: { drained: 3 },
        figures: figures(40, 2),
        connections: { byKind: { http1_idle: 5, upgraded: 2 }, streams: 0 },
        closedAtDeadline: 2,
        drained: { moved: 40, refused: 1, lost: 0, closed: 2, reset: 0 },
      },
    ],
  };
  const fresh: MasterMetrics = {
    pid: 20,
    state: 'running',
    release: 'v2',
    version: '2.0.0',
    releases: [
      {
        release: 'v2',
        version: '2.0.0',
        kind: 'node',
        workers: { booting: 0, ready: 2, draining: 0 },
        rss: 3e6,
        exits: {},
        figures: figures(7),
        connections: { byKind: { http2: 3 }, streams: 4 },
        closedAtDeadline: 0,
        drained: noMoves(),
      },
      {
        release: 'v1',
        version: '1.0.0',
        kind: 'node',
        workers: { booting: 1, ready: 0, draining: 0 },
        rss: 1e6,
        exits: { boot_failed: 1 },
        figures: figures(3, 1),
        connections: { byKind: { http1_idle: 1 }, streams: 0 },
        closedAtDeadline: 1,
        drained: { moved: 3, refused: 0, lost: 1, closed: 0, reset: 1 },
      },
      {
        release: 'x1',
        version: '1',
        kind: 'exec',
        workers: { booting: 0, ready: 1, draining: 0 },
        rss: 5e6,
        exits: {},
        connections: { byKind: {}, streams: 0 },
        closedAtDeadline: 0,
        drained: noMoves(),
      },
    ],
  };

  it('adds up counters, histograms and gauges by release, whichever master answers', async () => {
    const exposition = new Exposition();
    const text = await exposition.render([fresh, old], noDeploys);
    const prefork = (t: string) => t.split('\n').filter((l) => l.startsWith('prefork_'));
    expect(prefork(await exposition.render([old, fresh], noDeploys))).toEqual(prefork(text));
    expect(sample(text, 'prefork_http_requests_total{release="v1",code="2xx"}')).toBe(43);
    expect(sample(text, 'prefork_http_requests_total{release="v1",code="5xx"}')).toBe(3);
    expect(sample(text, 'prefork_http_requests_total{release="v2",code="2xx"}')).toBe(7);
    // Cumulative buckets, summed: 43 answers within 5 ms, all 46 within 0.5 s.
    const bucket = (le: string) =>
      sample(text, `prefork_http_request_duration_seconds_bucket{release="v1",le="${le}"}`);
    expect([bucket('0.005'), bucket('0.25'), bucket('0.5'), bucket('+Inf')]).toEqual([
      43, 43, 46, 46,
    ]);
    expect(sample(text, 'prefork_http_request_duration_seconds_count{release="v1"}')).toBe(46);
    expect(sample(text, 'prefork_http_request_duration_seconds_sum{release="v1"}')).toBeCloseTo(
      43 * 0.003 + 3 * 0.3,
      6,
    );
    expect(sample(text, 'prefork_workers{release="v1",state="ready"}')).toBe(2);
    expect(sample(text, 'prefork_workers{release="v1",state="booting"}')).toBe(1);
    expect(sample(text, 'prefork_worker_exits_total{release="v1",reason="drained"}')).toBe(3);
    expect(sample(text, 'prefork_worker_exits_total{release="v1",reason="boot_failed"}')).toBe(1);
    expect(sample(text, 'prefork_worker_exits_total{release="v2",reason="crashed"}')).toBe(0);
    expect(sample(text, 'prefork_worker_resident_memory_bytes{release="v1"}')).toBe(3e6);
    // Open connections by kind (0 for a kind with none), and those closed at a deadline.
    expect(sample(text, 'prefork_connections{release="v1",kind="http1_idle"}')).toBe(6);
    expect(sample(text, 'prefork_connections{release="v1",kind="upgraded"}')).toBe(2);
    expect(sample(text, 'prefork_connections{release="v1",kind="http1_busy"}')).toBe(0);
    expect(sample(text, 'prefork_connections{release="v2",kind="http2"}')).toBe(3);
    expect(sample(text, 'prefork_http2_streams{release="v2"}')).toBe(4);
    expect(sample(text, 'prefork_connections_closed_at_deadline_total{release="v1"}')).toBe(3);
    // What drains did with connections: summed over both masters, per outcome.
    const drained = (outcome: string) =>
      sample(text, `prefork_connections_drained_total{release="v1",outcome="${outcome}"}`);
    expect([drained('moved'), drained('refused'), drained('lost')]).toEqual([43, 1, 1]);
    expect([drained('closed'), drained('reset')]).toEqual([2, 1]);
    expect(sample(text, 'prefork_connections_drained_total{release="v2",outcome="moved"}')).toBe(0);
    // An exec release: workers and memory, no request series.
    expect(sample(text, 'prefork_workers{release="x1",state="ready"}')).toBe(1);
    expect(text).not.toMatch(/prefork_connections\{release="x1"/);
    expect(text).not.toMatch(/prefork_http_requests_total\{release="x1"/);
    // The service: the running master's release, two masters, and the master's own process.
    expect(sample(text, 'prefork_release_info{release="v2",version="2.0.0"}')).toBe(1);
    expect(text).not.toMatch(/prefork_release_info\{release="v1"/);
    expect(sample(text, 'prefork_masters')).toBe(2);
    expect(sample(text, 'process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('names the old master’s release while its new master boots, and counts deploys', async () => {
    const booting = { ...fresh, state: 'booting' as const };
    expect(servingMaster([booting, old])?.release).toBe('v1');
    expect(servingMaster([old, { ...fresh }])?.release).toBe('v2');
    const text = await new Exposition().render([old], {
      outcomes: { succeeded: 4, rolled_back: 1, incomplete: 0 },
      inFlight: { kind: 'deploy', release: 'v2', step: 'verify' },
    });
    expect(sample(text, 'prefork_deploys_total{outcome="succeeded"}')).toBe(4);
    expect(sample(text, 'prefork_deploys_total{outcome="rolled_back"}')).toBe(1);
    expect(sample(text, 'prefork_deploy_step{kind="deploy",release="v2",step="verify"}')).toBe(1);
    expect(sample(text, 'prefork_masters')).toBe(1);
  });
});
