/**
 * The bench's deploy-latency section: p99 while a server replaces its workers ÷ the steady p99
 * before (measured with hey, whose client honours a server's `Connection: close`: autocannon
 * writes its next request on such a connection anyway and then times the following answers
 * from requests sent earlier, which inflates every latency after a reconnect), for a plain prefork deploy with the old workers stopped all at once at WINCH (as
 * before `--retire-window`) and one at a time (the default), for `--canary`, and for PM2 and
 * the cluster module in the same run; and a chart per server of requests/s by old and new
 * workers and of p99 over time through one replacement (SVG, drawn by Vega-Lite).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { autocannonLoad, heyLoad, type Samples, windowQuantile } from './load.js';
import type { PreforkRig } from './rigs/prefork-rig.js';
import { median, type Rig, sleep } from './rigs/rig.js';

/** Kept-alive connections, as in the issue that asked for this measure. */
export const LATENCY_CONNECTIONS = 32;
/** Steady load before the replacement; its first second is left out (warm load generator). */
const STEADY_MS = 5000;
/** Load after the replacement returned. */
const TAIL_MS = 1500;
/** Width of a chart's time bins. */
const BIN_MS = 250;
/**
 * The sampler that tells old workers' answers from new ones': as many kept-alive connections
 * as hey's, so the kernel spreads them alike, but a light load (hey's body is not read).
 */
const SAMPLER_CONNECTIONS = LATENCY_CONNECTIONS;
const SAMPLER_RATE = 1000;

/** One way of replacing workers, measured. */
export interface Contender {
  /** How the report and the chart name it. */
  name: string;
  /** A file name for its chart. */
  slug: string;
  rig: Rig;
  replace(): Promise<[number, number]>;
}

/** One run of one contender. */
export interface LatencyRun {
  steadyP99: number;
  replacingP99: number;
  ratio: number;
  replaceMs: number;
  /** Requests hey had answered. */
  requests: number;
  /** The sampler's requests, and those that failed (hey does not list failures). */
  sampled: number;
  failedSampled: number;
}

/** A contender's runs, and the bins of its last run for the chart. */
export interface LatencyResult {
  name: string;
  runs: LatencyRun[];
  chart: string;
}

/** A time bin of a run: requests/s answered by the old and the new workers, and the p99. */
interface Bin {
  t: number;
  old: number;
  new: number;
  p99: number;
}

/** The prefork contenders on one rig: plain deploys before and after, and the canary. */
export function preforkContenders(rig: PreforkRig): Contender[] {
  return [
    {
      name: 'prefork deploy, old workers stopped at once (--retire-window 0)',
      slug: 'prefork-at-once',
      rig,
      replace: () => rig.replaceOnce(['--retire-window', '0']),
    },
    {
      name: 'prefork deploy (default: --retire-window 1)',
      slug: 'prefork',
      rig,
      replace: () => rig.replaceOnce(),
    },
    {
      name: 'prefork deploy --canary (steps 1,50%, window 2 s)',
      slug: 'prefork-canary',
      rig,
      replace: () =>
        rig.replaceOnce(['--canary', '--canary-window', '2', '--canary-min-requests', '100']),
    },
  ];
}

async function measure(
  contender: Contender,
): Promise<{ run: LatencyRun; bins: Bin[]; window: [number, number] }> {
  const loadStart = performance.now();
  let window: [number, number] = [loadStart + STEADY_MS, loadStart + STEADY_MS];
  const cycle = sleep(STEADY_MS).then(async () => {
    window = await contender.replace();
    await sleep(TAIL_MS);
  });
  const [samples, sampler] = await Promise.all([
    heyLoad(contender.rig.url, { connections: LATENCY_CONNECTIONS, until: cycle }),
    autocannonLoad(contender.rig.url, {
      seconds: 600,
      until: cycle,
      connections: SAMPLER_CONNECTIONS,
      rate: SAMPLER_RATE,
      pids: true,
    }),
  ]);
  const steadyP99 = windowQuantile(samples, [[loadStart + 1000, window[0]]], 0.99);
  const replacingP99 = windowQuantile(samples, [window], 0.99);
  return {
    run: {
      steadyP99,
      replacingP99,
      ratio: replacingP99 / Math.max(0.001, steadyP99),
      replaceMs: Math.round(window[1] - window[0]),
      requests: samples.count,
      sampled: sampler.figures.requests,
      failedSampled: sampler.figures.failed,
    },
    bins: binsOf(samples, sampler.samples, loadStart, window[0]),
    window: [(window[0] - loadStart) / 1000, (window[1] - loadStart) / 1000],
  };
}

/**
 * Cuts a run into {@link BIN_MS} bins: hey's answers give the rate and the p99; the sampler's
 * share of answers from new workers (a pid it first saw after `replaceFrom`) splits the rate.
 */
function binsOf(samples: Samples, sampler: Samples, loadStart: number, replaceFrom: number): Bin[] {
  const binOf = (at: number) => Math.floor((at - loadStart) / BIN_MS);
  const old = new Set<number>();
  for (let i = 0; i < sampler.count; i += 1) {
    if ((sampler.at[i] as number) < replaceFrom) old.add(sampler.pid?.[i] ?? 0);
  }
  const shares: { old: number; new: number }[] = [];
  for (let i = 0; i < sampler.count; i += 1) {
    const index = binOf(sampler.at[i] as number);
    shares[index] ??= { old: 0, new: 0 };
    if (old.has(sampler.pid?.[i] ?? 0)) shares[index].old += 1;
    else shares[index].new += 1;
  }
  const latencies: number[][] = [];
  for (let i = 0; i < samples.count; i += 1) {
    const index = binOf(samples.at[i] as number);
    if (index < 0) continue;
    latencies[index] ??= [];
    latencies[index].push(samples.latency[i] as number);
  }
  const perSecond = 1000 / BIN_MS;
  let share = 0;
  const bins: Bin[] = [];
  for (const [index, bin] of latencies.entries()) {
    if (bin === undefined) continue;
    const seen = shares[index];
    if (seen !== undefined && seen.old + seen.new > 0) share = seen.new / (seen.old + seen.new);
    bin.sort((a, b) => a - b);
    const rate = bin.length * perSecond;
    bins.push({
      t: (index * BIN_MS) / 1000,
      old: Math.round(rate * (1 - share)),
      new: Math.round(rate * share),
      p99: bin[Math.floor(bin.length * 0.99)] ?? 0,
    });
  }
  return bins;
}

/** The chart of one run: requests/s by old and new workers above, p99 below, the replacement shaded. */
async function drawChart(title: string, bins: Bin[], window: [number, number]): Promise<string> {
  const vega = await import('vega');
  const vegaLite = await import('vega-lite');
  const rates = bins.flatMap((b) => [
    { t: b.t, workers: 'old', rps: b.old },
    { t: b.t, workers: 'new', rps: b.new },
  ]);
  const shade = {
    mark: { type: 'rect', color: '#eee' },
    data: { values: [{ from: window[0], to: window[1] }] },
    encoding: { x: { field: 'from', type: 'quantitative' }, x2: { field: 'to' } },
  } as const;
  const x = { field: 't', type: 'quantitative', title: 'seconds since the load started' } as const;
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    vconcat: [
      {
        width: 640,
        height: 160,
        layer: [
          shade,
          {
            data: { values: rates },
            mark: { type: 'area', interpolate: 'step-after' },
            encoding: {
              x,
              y: { field: 'rps', type: 'quantitative', stack: 'zero', title: 'requests/s' },
              color: {
                field: 'workers',
                type: 'nominal',
                scale: { domain: ['old', 'new'], range: ['#9aa5b1', '#2f7ed8'] },
                title: 'answered by',
              },
            },
          },
        ],
      },
      {
        width: 640,
        height: 120,
        layer: [
          shade,
          {
            data: { values: bins },
            mark: { type: 'line', interpolate: 'step-after', color: '#d9534f' },
            encoding: {
              x,
              y: { field: 'p99', type: 'quantitative', title: `p99 per ${BIN_MS} ms (ms)` },
            },
          },
        ],
      },
    ],
  };
  const compiled = vegaLite.compile(spec as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  return svg;
}

/**
 * Measures each contender `rounds` times, alternating them round by round (the machine's
 * drift spreads over all), and draws each one's last run into `chartDir`.
 */
export async function deployLatency(
  contenders: Contender[],
  rounds: number,
  chartDir: string,
): Promise<LatencyResult[]> {
  const results = contenders.map((c) => ({
    name: c.name,
    runs: [] as LatencyRun[],
    chart: join(chartDir, `deploy-${c.slug}.svg`),
  }));
  const last: { bins: Bin[]; window: [number, number] }[] = [];
  for (let round = 0; round < rounds; round += 1) {
    for (const [i, contender] of contenders.entries()) {
      const { run, bins, window } = await measure(contender);
      results[i]?.runs.push(run);
      last[i] = { bins, window };
    }
  }
  mkdirSync(chartDir, { recursive: true });
  for (const [i, result] of results.entries()) {
    const run = last[i];
    if (run === undefined) continue;
    const ratio = result.runs.at(-1)?.ratio.toFixed(2);
    const svg = await drawChart(`${result.name}: p99 ${ratio}× steady`, run.bins, run.window);
    writeFileSync(result.chart, svg);
  }
  return results;
}

/** The report's table: per contender, each run's p99s and ratio, and the median ratio. */
export function latencyTable(results: LatencyResult[]): string[] {
  const fmt = (n: number) => n.toFixed(1);
  return [
    '| server | steady p99 (ms) | p99 while replacing (ms) | ratio, per run | median | sampler: failed of sent | replacing took (ms) |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...results.map((r) => {
      const ratios = r.runs.map((run) => run.ratio);
      return `| ${r.name} | ${r.runs.map((run) => fmt(run.steadyP99)).join(', ')} | ${r.runs.map((run) => fmt(run.replacingP99)).join(', ')} | ${ratios.map((x) => x.toFixed(2)).join(', ')} | **${median(ratios).toFixed(2)}** | ${r.runs.reduce((n, run) => n + run.failedSampled, 0)} of ${r.runs.reduce((n, run) => n + run.sampled, 0)} | ${r.runs.map((run) => run.replaceMs).join(', ')} |`;
    }),
  ];
}
