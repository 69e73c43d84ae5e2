/**
 * `npm run bench:metrics`: what `--metrics-bind` costs. Numbers, not assertions.
 *
 * 1. Keep-alive throughput of the bundled release with metrics on (workers count every response
 *    by status and latency, and the master is scraped every `SCRAPE_MS`, 1 s by default) and
 *    off: alternating runs against two masters that are up at once, median of each, and the
 *    workers' CPU time per request.
 * 2. The master's memory with 4 workers after 15 s, scraped once a second, next to one with
 *    metrics off.
 *
 * Prints a Markdown report; docs/benchmarks.md holds the last recorded run.
 */
import os from 'node:os';
import { autocannonLoad } from './load.js';
import { PreforkRig } from './rigs/prefork-rig.js';
import { childrenCpuMs, footprint, freePort, getEvery, median, sleep } from './rigs/rig.js';

/** Rounds: each runs the load once against each master, in alternating order. */
const ROUNDS = 12;
const RUN_SECONDS = 5;
/** How long a master idles (scraped, not loaded) before its memory is read. */
const IDLE_MS = 15_000;

/**
 * How often the metrics master is scraped during the throughput runs: `SCRAPE_MS` (default
 * 1000, a dashboard's worst case; Prometheus's default interval is 60 s, 15 s is common).
 */
const SCRAPE_MS = Number(process.env.SCRAPE_MS ?? 1000);

async function main(): Promise<void> {
  const workers = os.availableParallelism();
  const out: string[] = [
    `# bench:metrics — ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, Node ${process.version}, ${workers} workers`,
    '',
  ];
  const metricsPort = await freePort();
  const on = new PreforkRig(0, ['--metrics-bind', `127.0.0.1:${metricsPort}`]);
  const off = new PreforkRig();
  const rigs = [on, off];
  try {
    for (const rig of rigs) await rig.start(workers);
    const scrapes = getEvery(`http://127.0.0.1:${metricsPort}/metrics`, SCRAPE_MS);
    // A first run each, not counted: fresh workers answer slower until V8 has compiled them.
    for (const rig of rigs) await autocannonLoad(rig.url, { seconds: RUN_SECONDS });
    const onRuns: number[] = [];
    const offRuns: number[] = [];
    /** on ÷ off of each round: the two runs of a round are seconds apart, so drift cancels. */
    const ratios: number[] = [];
    /**
     * Workers' CPU time and requests, summed over every run: CPU per request is the figure a
     * noisy machine moves least (throughput swings with whatever else runs).
     */
    const cpu = new Map<PreforkRig, { ms: number; requests: number }>([
      [on, { ms: 0, requests: 0 }],
      [off, { ms: 0, requests: 0 }],
    ]);
    for (let round = 0; round < ROUNDS; round += 1) {
      const order = round % 2 === 0 ? [on, off] : [off, on];
      const rps = new Map<PreforkRig, number>();
      for (const rig of order) {
        const cpuBefore = childrenCpuMs(rig.supervisorPid());
        const { figures } = await autocannonLoad(rig.url, { seconds: RUN_SECONDS });
        const cpuMs = childrenCpuMs(rig.supervisorPid()) - cpuBefore;
        rps.set(rig, figures.rps);
        const total = cpu.get(rig);
        if (total !== undefined) {
          total.ms += cpuMs;
          total.requests += figures.requests;
        }
      }
      onRuns.push(rps.get(on) ?? 0);
      offRuns.push(rps.get(off) ?? 0);
      ratios.push((rps.get(on) ?? 0) / (rps.get(off) ?? 1));
    }
    const failedScrapes = await scrapes.stop();
    const perRequest = (rig: PreforkRig) => {
      const { ms, requests } = cpu.get(rig) ?? { ms: 0, requests: 1 };
      return ms / requests;
    };
    const ratio = median(ratios);
    out.push(
      `## 1. Keep-alive throughput (${ROUNDS} rounds of one ${RUN_SECONDS} s run each, in alternating order; autocannon, 50 connections)`,
      '',
      '| metrics | median req/s | runs |',
      '| --- | --- | --- |',
      `| on (scraped every ${SCRAPE_MS / 1000} s) | ${median(onRuns)} | ${onRuns.join(', ')} |`,
      `| off | ${median(offRuns)} | ${offRuns.join(', ')} |`,
      '',
      '| metrics | workers’ CPU per request, all runs (µs) | requests |',
      '| --- | --- | --- |',
      ...[on, off].map((rig) => {
        const { ms, requests } = cpu.get(rig) ?? { ms: 0, requests: 1 };
        return `| ${rig === on ? 'on' : 'off'} | ${((ms * 1000) / requests).toFixed(2)} | ${requests} |`;
      }),
      '',
      `CPU per request, on ÷ off: **${(perRequest(on) / perRequest(off)).toFixed(3)}**`,
      '',
      `on ÷ off, median of the rounds' ratios: **${ratio.toFixed(3)}** (${((ratio - 1) * 100).toFixed(1)} %; rounds: ${ratios.map((r) => r.toFixed(3)).join(', ')}); scrapes that failed: ${failedScrapes}`,
      '',
    );
  } finally {
    for (const rig of rigs) await rig.stop();
  }

  // 2. Memory of a master with 4 workers, metrics on and scraped, and off.
  const memoryPort = await freePort();
  const memory: string[] = [];
  for (const [label, rig] of [
    ['on (scraped every second)', new PreforkRig(0, ['--metrics-bind', `127.0.0.1:${memoryPort}`])],
    ['off', new PreforkRig()],
  ] as const) {
    try {
      await rig.start(4);
      const scrapes =
        label === 'off' ? undefined : getEvery(`http://127.0.0.1:${memoryPort}/metrics`, 1000);
      await sleep(IDLE_MS);
      const { rssMb, anonMb } = footprint(rig.supervisorPid());
      await scrapes?.stop();
      memory.push(`| ${label} | ${rssMb} | ${anonMb} |`);
    } finally {
      await rig.stop();
    }
  }
  out.push(
    `## 2. Master memory with 4 workers, after ${IDLE_MS / 1000} s`,
    '',
    '| metrics | RSS (MB) | of which private (MB) |',
    '| --- | --- | --- |',
    ...memory,
    '',
  );
  process.stdout.write(`${out.join('\n')}\n`);
}

await main();
