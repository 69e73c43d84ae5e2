/**
 * `npm run bench:storm`: the reconnect storm. 2,000 WebSocket clients of docs/examples/websocket
 * are moved by a deploy, told goodbye all at once (`--goodbye-window 0`) or spread over the
 * window (the default, 5 s). Reported for each: the time until every client is on the new
 * release, the largest share of goodbyes in any 250 ms, the p99 (and max) of a light HTTP probe
 * while they arrive ÷ its steady p99, and the new workers' CPU. Numbers, not assertions;
 * docs/benchmarks.md holds the last recorded run.
 */
import { fork } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { installExample } from '../helpers/examples.js';
import { peakShare } from '../helpers/long-lived-clients.js';
import { readPid } from '../helpers/processes.js';
import { REPO } from '../helpers/repo.js';
import { timedLoad } from './load.js';
import { childrenCpuMs, freePort, median, must, sleep } from './rigs/rig.js';

const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PREFORK = join(REPO, 'bin/prefork');
/** The probe: kept-alive connections, each sending one request every PROBE_GAP_MS. */
const PROBE_CONNECTIONS = 4;
const PROBE_GAP_MS = 5;
const STEADY_MS = 3000;
const CPU_BIN_MS = 250;

interface Report {
  onRelease: Record<string, number>;
  goodbyes: number[];
  errors: number;
  firstErrors?: string[];
  codes: Record<string, number>;
}

/** The kernel's count of connections dropped because a listen queue was full (system-wide). */
function listenOverflows(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
  const names = lines.find((l) => l.startsWith('TcpExt:'))?.split(' ') ?? [];
  const values = lines.filter((l) => l.startsWith('TcpExt:'))[1]?.split(' ') ?? [];
  return Number(values[names.indexOf('ListenOverflows')] ?? 0);
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

interface Round {
  backMs: number;
  peak: number;
  p99Ratio: number;
  maxMs: number;
  cpuAvg: number;
  cpuPeak: number;
  errors: number;
  overflows: number;
}

/** One deploy of `CLIENTS` clients with `--goodbye-window windowS`. */
async function round(installed: string, windowS: number): Promise<Round> {
  const root = mkdtempSync(join(os.tmpdir(), 'prefork-storm-'));
  const port = await freePort();
  let report: Report = { onRelease: {}, goodbyes: [], errors: 0, codes: {} };
  let clients: ReturnType<typeof fork> | undefined;
  try {
    for (const name of ['ws-a', 'ws-b']) {
      cpSync(installed, join(root, 'releases', name), { recursive: true });
    }
    await must(PREFORK, [
      'start',
      '--root',
      root,
      'releases/ws-a',
      '--bind',
      `127.0.0.1:${port}`,
      '--workers',
      '2',
      '--graceful-timeout',
      '60',
      '--goodbye-window',
      String(windowS),
      '--daemon',
    ]);
    // The clients start once the master serves (before, each would count a refused connection).
    clients = fork(fileURLToPath(new URL('./storm-clients.js', import.meta.url)), [
      `ws://127.0.0.1:${port}/`,
      String(CLIENTS),
    ]);
    clients.on('message', (message) => {
      report = message as Report;
    });
    const until = async (what: () => boolean, ms: number) => {
      const end = Date.now() + ms;
      while (!what()) {
        if (Date.now() > end) throw new Error(`timed out: ${JSON.stringify(report.onRelease)}`);
        await sleep(20);
      }
    };
    await until(() => report.onRelease['ws-a'] === CLIENTS, 120_000);
    const load = timedLoad(port, PROBE_CONNECTIONS, PROBE_GAP_MS);
    await sleep(STEADY_MS);
    const oldPid = readPid(join(root, 'prefork.pid'));
    const overflowsBefore = listenOverflows();
    const deployAt = performance.now();
    const goodbyesBefore = report.goodbyes.length;
    const deploy = must(PREFORK, [
      'deploy',
      '--root',
      root,
      'releases/ws-b',
      '--health-path',
      '/health',
      '--verify-window',
      '1',
    ]);
    deploy.catch(() => {}); // awaited below: its failure is reported there
    // The new workers' CPU, in bins, from the moment their master is in the pidfile.
    const cpu: number[] = [];
    let newPid: number | undefined;
    let last = 0;
    while (report.onRelease['ws-b'] !== CLIENTS) {
      await sleep(CPU_BIN_MS);
      const pid = readPid(join(root, 'prefork.pid'));
      if (newPid === undefined && pid !== undefined && pid !== oldPid) {
        newPid = pid;
        last = childrenCpuMs(pid);
      } else if (newPid !== undefined) {
        const now = childrenCpuMs(newPid);
        cpu.push((now - last) / CPU_BIN_MS);
        last = now;
      }
      if (performance.now() - deployAt > 120_000) throw new Error('clients not back in 120 s');
    }
    const backMs = performance.now() - deployAt;
    const errors = report.errors;
    const overflows = listenOverflows() - overflowsBefore;
    if (errors > 0) process.stderr.write(`client errors: ${report.firstErrors?.join('; ')}\n`);
    await deploy;
    await load.stop();
    const steady = load.timings.filter(([t]) => t > deployAt - STEADY_MS + 1000 && t < deployAt);
    const storm = load.timings.filter(([t]) => t >= deployAt && t <= deployAt + backMs);
    const p99 = (s: [number, number][]) =>
      quantile(
        s.map(([, ms]) => ms),
        0.99,
      );
    await must(PREFORK, ['stop', '--root', root]);
    return {
      backMs,
      peak: peakShare(report.goodbyes.slice(goodbyesBefore), 250),
      p99Ratio: p99(storm) / p99(steady),
      maxMs: Math.max(...storm.map(([, ms]) => ms)),
      cpuAvg: cpu.reduce((a, b) => a + b, 0) / Math.max(1, cpu.length),
      cpuPeak: Math.max(0, ...cpu),
      errors,
      overflows,
    };
  } finally {
    if (clients?.connected) clients.disconnect();
    rmSync(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const installed = mkdtempSync(join(os.tmpdir(), 'prefork-storm-example-'));
  try {
    await installExample('websocket', installed);
    const rows: string[] = [
      "| goodbyes | every client back (s) | peak share of goodbyes in 250 ms | probe p99 while they arrive ÷ steady | probe max (ms) | new workers' CPU, mean / peak 250 ms (cores) | client errors | listen queue overflows |",
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ];
    for (const [label, windowS] of [
      ['all at once (`--goodbye-window 0`)', 0],
      ['spread (default, 5 s)', 5],
    ] as const) {
      const rounds: Round[] = [];
      for (let i = 0; i < ROUNDS; i += 1) rounds.push(await round(installed, windowS));
      const m = (f: (r: Round) => number) => median(rounds.map(f));
      rows.push(
        `| ${label} | ${(m((r) => r.backMs) / 1000).toFixed(1)} | ${(m((r) => r.peak) * 100).toFixed(0)} % | ${m((r) => r.p99Ratio).toFixed(2)} | ${m((r) => r.maxMs).toFixed(0)} | ${m((r) => r.cpuAvg).toFixed(2)} / ${m((r) => r.cpuPeak).toFixed(2)} | ${rounds.reduce((n, r) => n + r.errors, 0)} | ${rounds.reduce((n, r) => n + r.overflows, 0)} |`,
      );
    }
    process.stdout.write(
      `${CLIENTS} WebSocket clients (docs/examples/websocket, each chatting once a second), 2 workers, a probe of ${PROBE_CONNECTIONS} kept-alive HTTP connections; medians of ${ROUNDS} rounds, ${os.availableParallelism()} cores, Node ${process.version}.\n\n${rows.join('\n')}\n`,
    );
  } finally {
    rmSync(installed, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`prefork bench: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  },
);
