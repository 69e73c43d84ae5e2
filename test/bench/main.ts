/**
 * `npm run bench`: numbers, not assertions. On loopback, prefork, Node's cluster module and PM2
 * (cluster mode, `wait_ready`) serve the same bundled release with as many workers as cores:
 *
 * 1. failed requests while each replaces its workers at saturation (keep-alive, then
 *    `Connection: close`; autocannon, cross-checked by wrk where installed);
 * 2. throughput, median of alternating runs;
 * 3. p99 while replacing workers ÷ steady p99, from the same runs as 1;
 * 4. a deploy's cost, and the master's footprint with 4 and 32 workers next to PM2's daemon;
 * 5. 32 workers: time to ready, and a deploy under load;
 * 6. p99 through one deploy (plain, plain with the old workers stopped at once, canary),
 *    `pm2 reload` and a cluster restart, measured with hey, and a chart of each.
 *
 * Prints a Markdown report and writes every figure as JSON (`BENCH_JSON`, default
 * `bench-results.json`). docs/benchmarks.md holds the last recorded run.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import {
  deployLatency,
  LATENCY_CONNECTIONS,
  latencyTable,
  preforkContenders,
} from './deploy-latency.js';
import {
  autocannonLoad,
  CONNECTIONS,
  ensureHey,
  ensureWrk,
  type LoadFigures,
  windowQuantile,
  wrkLoad,
} from './load.js';
import { ClusterRig } from './rigs/cluster-rig.js';
import { Pm2Rig, pm2Version } from './rigs/pm2-rig.js';
import { type Phases, PreforkRig, SWITCH_MS } from './rigs/prefork-rig.js';
import { footprint, median, type Rig, sleep } from './rigs/rig.js';

const WORKERS = os.availableParallelism();
/** Runs per server and connection kind for the drop scenario (wrk: one more where installed). */
const DROP_RUNS = 2;
/** Alternating throughput rounds (one run per server each). */
const THROUGHPUT_ROUNDS = 5;
/**
 * Load before the workers are replaced: the steady state the latency ratio compares with
 * (from its second second on, once the load generator is warm).
 */
const STEADY_MS = 5000;
/** Rounds of the deploy-latency section (each contender once per round). */
const LATENCY_ROUNDS = 3;
/** Warm-up requests per new worker for the `--warmup` prefork. */
const WARMUP = 2000;

/** Every rig started, so that a failed run still stops what it started. */
const started: Rig[] = [];

async function startRig<T extends Rig>(rig: T, workers: number): Promise<T> {
  started.push(rig);
  await rig.start(workers);
  return rig;
}

async function stopRig(rig: Rig): Promise<void> {
  started.splice(started.indexOf(rig), 1);
  await rig.stop();
}

function kinds(figures: LoadFigures): string {
  const entries = Object.entries(figures.failedByKind);
  return entries.length === 0 ? '—' : entries.map(([kind, n]) => `${kind} ${n}`).join(', ');
}

/** One drop-scenario run: steady load, then the rig replaces its workers under it. */
interface DropRun {
  server: string;
  connection: 'keep-alive' | 'close';
  run: number;
  figures: LoadFigures;
  /** autocannon runs only: p99 of the steady seconds and of the replacement windows. */
  steadyP99?: number;
  replacingP99?: number;
  /** prefork's autocannon runs: p99 in each phase of its replacements. */
  phaseP99?: Record<keyof Phases, number>;
  replaceMs: number;
}

async function dropRun(
  rig: Rig,
  close: boolean,
  run: number,
  tool: 'autocannon' | 'wrk',
): Promise<DropRun> {
  const connection = close ? 'close' : 'keep-alive';
  const loadStart = performance.now();
  let windows: [number, number][] = [];
  const cycle = sleep(STEADY_MS).then(async () => {
    windows = await rig.replace();
    await sleep(250);
  });
  const base = { server: rig.name, connection, run } as const;
  if (tool === 'wrk') {
    const figures = await wrkLoad(rig.url, { seconds: 120, close, until: cycle });
    return { ...base, figures, replaceMs: replaceTime(windows) };
  }
  const { figures, samples } = await autocannonLoad(rig.url, { seconds: 120, close, until: cycle });
  const firstReplace = windows[0]?.[0] ?? loadStart + STEADY_MS;
  return {
    ...base,
    figures,
    steadyP99: windowQuantile(samples, [[loadStart + 1000, firstReplace]], 0.99),
    replacingP99: windowQuantile(samples, windows, 0.99),
    ...(rig instanceof PreforkRig && {
      phaseP99: {
        boot: windowQuantile(samples, rig.phases.boot, 0.99),
        switch: windowQuantile(samples, rig.phases.switch, 0.99),
        rest: windowQuantile(samples, rig.phases.rest, 0.99),
      },
    }),
    replaceMs: replaceTime(windows),
  };
}

function replaceTime(windows: [number, number][]): number {
  return Math.round(windows.reduce((sum, [from, to]) => sum + to - from, 0));
}

async function main(): Promise<void> {
  const began = Date.now();
  const wrk = ensureWrk();
  const results: Record<string, unknown> = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    workers: WORKERS,
    connections: CONNECTIONS,
    pm2: pm2Version(),
    wrk: wrk ?? null,
  };
  const out: string[] = [
    '# prefork benchmarks',
    '',
    `Machine: ${results.cpu}, ${results.cores} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB; ${os.type()} ${os.release()}. Node ${process.version}. Command: \`npm run bench\`.`,
    `Servers: prefork, Node's cluster module (round-robin) and PM2 ${pm2Version()} (cluster mode, \`wait_ready\`), each serving \`releases/v1\` with ${WORKERS} workers (= cores), each in its own session; in the replacement scenarios also prefork with \`--warmup ${WARMUP} --warmup-path /health\`. Load: autocannon, ${CONNECTIONS} connections at saturation on loopback${wrk ? `; wrk ${wrk} (2 threads, ${CONNECTIONS} connections) as a cross-check` : '; wrk is not installed (`apt-get install wrk` adds a cross-check)'}.`,
    '',
  ];

  const prefork = await startRig(new PreforkRig(), WORKERS);
  const cluster = await startRig(new ClusterRig(), WORKERS);
  const pm2 = await startRig(new Pm2Rig(), WORKERS);
  const warm = await startRig(new PreforkRig(WARMUP), WORKERS);
  /** Throughput: one prefork (a warm-up changes nothing once workers run). */
  const servers: Rig[] = [prefork, pm2, cluster];
  /** Replacements: prefork also with a warm-up, which is for exactly that. */
  const replacing: Rig[] = [prefork, warm, pm2, cluster];

  // 1. Failed requests while the workers are replaced, at saturation.
  const drops: DropRun[] = [];
  for (const close of [false, true]) {
    for (let run = 1; run <= DROP_RUNS; run += 1) {
      for (const rig of replacing) drops.push(await dropRun(rig, close, run, 'autocannon'));
    }
    if (wrk) for (const rig of replacing) drops.push(await dropRun(rig, close, 1, 'wrk'));
  }
  results.drops = drops;
  const how: Record<string, string> = {
    [prefork.name]: 'deploy → rollback → deploy',
    [warm.name]: 'deploy → rollback → deploy',
    [pm2.name]: '`pm2 reload` ×2',
    [cluster.name]: 'fork new, disconnect old ×2',
  };
  out.push(
    '## 1. Failed requests while the workers are replaced, at saturation',
    '',
    '| server | replaced by | connection | tool | run | requests | req/s | failed | failed by kind | p50 (ms) | p99 (ms) | max (ms) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...drops.map(
      (d) =>
        `| ${d.server} | ${how[d.server]} | ${d.connection} | ${d.figures.tool} | ${d.run} | ${d.figures.requests} | ${d.figures.rps} | **${d.figures.failed}** | ${kinds(d.figures)} | ${d.figures.p50} | ${d.figures.p99} | ${d.figures.max} |`,
    ),
    '',
    'Failed = errors (by kind: ECONNRESET etc. from autocannon; connect/read/write/timeout from wrk) + timeouts + non-2xx answers. With `Connection: close`, autocannon writes its next request on the connection the server just announced it closes (it does not honour the header), then reconnects and times that request from the first write: its latencies in that mode measure its own reconnect loop, for every server alike. wrk honours the header; read the latencies of those rows from wrk.',
    '',
  );

  // 2. Throughput, alternating runs (the order rotates each round): keep-alive with
  // autocannon; a new connection per request with wrk, which honours `Connection: close`.
  const modes: { label: string; tool: 'autocannon' | 'wrk'; close: boolean }[] = [
    { label: 'keep-alive, autocannon', tool: 'autocannon', close: false },
    ...(wrk ? [{ label: '`Connection: close`, wrk', tool: 'wrk' as const, close: true }] : []),
  ];
  const throughput: Record<string, Record<string, { median: number; runs: number[] }>> = {};
  for (const mode of modes) {
    const rps: Record<string, number[]> = {};
    for (let round = 0; round < THROUGHPUT_ROUNDS; round += 1) {
      for (let i = 0; i < servers.length; i += 1) {
        const rig = servers[(i + round) % servers.length] as Rig;
        const figures =
          mode.tool === 'wrk'
            ? await wrkLoad(rig.url, { seconds: 5, close: mode.close })
            : (await autocannonLoad(rig.url, { seconds: 5 })).figures;
        rps[rig.name] = [...(rps[rig.name] ?? []), figures.rps];
      }
    }
    throughput[mode.label] = Object.fromEntries(
      Object.entries(rps).map(([name, runs]) => [name, { median: median(runs), runs }]),
    );
  }
  results.throughput = throughput;
  out.push(
    `## 2. Throughput (median of ${THROUGHPUT_ROUNDS} alternating 5 s runs)`,
    '',
    '| server | connections | req/s | runs | prefork ÷ this |',
    '| --- | --- | --- | --- | --- |',
    ...modes.flatMap((mode) => {
      const byServer = throughput[mode.label] ?? {};
      const preforkRps = byServer[prefork.name]?.median ?? 0;
      return servers.map((rig) => {
        const t = byServer[rig.name] as { median: number; runs: number[] };
        return `| ${rig.name} | ${mode.label} | ${t.median} | ${t.runs.join(', ')} | ${(preforkRps / t.median).toFixed(2)}× |`;
      });
    }),
    '',
  );

  // 3. Latency while replacing, from the keep-alive autocannon runs of 1.
  const latency = replacing.map((rig) => {
    const runs = drops.filter(
      (d) => d.server === rig.name && d.connection === 'keep-alive' && d.steadyP99 !== undefined,
    );
    const ratios = runs.map((d) => (d.replacingP99 ?? 0) / Math.max(0.001, d.steadyP99 ?? 0));
    return { server: rig.name, runs, ratios, worst: Math.max(...ratios) };
  });
  results.latency = latency.map((l) => ({
    server: l.server,
    ratios: l.ratios,
    worstRatio: l.worst,
    runs: l.runs.map((d) => ({ steadyP99: d.steadyP99, replacingP99: d.replacingP99 })),
  }));
  const fmt = (n: number | undefined) => (n ?? 0).toFixed(1);
  out.push(
    '## 3. Latency while the workers are replaced (keep-alive runs of 1)',
    '',
    `p99 of the responses that arrived while the workers were being replaced, against p99 of the ${STEADY_MS / 1000 - 1} s of steady load just before, in the same run (target for prefork: ≤ 2).`,
    '',
    '| server | steady p99 (ms) | p99 while replacing (ms) | ratio, per run | worst |',
    '| --- | --- | --- | --- | --- |',
    ...latency.map(
      (l) =>
        `| ${l.server} | ${l.runs.map((d) => fmt(d.steadyP99)).join(', ')} | ${l.runs.map((d) => fmt(d.replacingP99)).join(', ')} | ${l.ratios.map((r) => r.toFixed(2)).join(', ')} | ${l.worst.toFixed(2)} |`,
    ),
    '',
    `Where prefork's slow responses are, per run (p99 in ms): while the new master and workers boot next to the serving ones (USR2 → ready); in the first ${SWITCH_MS} ms after WINCH, when the new workers take every connection; and the rest of each command.`,
    '',
    '| server | run | boot | switch | rest |',
    '| --- | --- | --- | --- | --- |',
    ...latency
      .flatMap((l) => l.runs)
      .filter((d) => d.phaseP99 !== undefined)
      .map(
        (d) =>
          `| ${d.server} | ${d.run} | ${fmt(d.phaseP99?.boot)} | ${fmt(d.phaseP99?.switch)} | ${fmt(d.phaseP99?.rest)} |`,
      ),
    '',
  );
  await stopRig(cluster);
  await stopRig(pm2);
  await stopRig(warm);

  // 4. A deploy's cost (no load), then the master's footprint next to PM2's daemon.
  const deploy = await prefork.step('deploy', 'releases/v2');
  await stopRig(prefork);
  const boot = deploy.steps['wait-ready'] ?? 0;
  const window = deploy.steps['verify-window'] ?? 0;
  const overhead = deploy.totalMs - boot - window;
  results.deploy = { ...deploy, bootMs: boot, verifyWindowMs: window, overheadMs: overhead };
  out.push(
    "## 4. A deploy's cost and the master's footprint",
    '',
    `\`prefork deploy releases/v2 --verify-window 1\` with ${WORKERS} workers, no load${deploy.failed ? ` **failed (${deploy.failed})**` : ''}: ${deploy.totalMs} ms = the new release's boot (new master + workers ready) ${boot} ms + verify window ${window} ms + **prefork's own overhead ${overhead} ms** (target < 1000). Steps (ms): ${Object.entries(
      deploy.steps,
    )
      .map(([step, ms]) => `${step} ${ms}`)
      .join(', ')}.`,
    '',
  );

  const idle = async (rigs: Rig[]) => {
    await sleep(15_000);
    const before = rigs.map((rig) => footprint(rig.supervisorPid()));
    await sleep(10_000);
    return rigs.map((rig, i) => {
      const after = footprint(rig.supervisorPid());
      return { ...after, idleCpuPercent: (after.cpuMs - (before[i]?.cpuMs ?? 0)) / 100 };
    });
  };
  const small = new PreforkRig();
  let readyStart = performance.now();
  await startRig(small, 4);
  const ready4 = Math.round(performance.now() - readyStart);
  const pm2Small = await startRig(new Pm2Rig(), 4);
  const [master4, daemon4] = await idle([small, pm2Small]);
  await stopRig(pm2Small);
  await stopRig(small);

  // 5. Scale: 32 workers ready, then a deploy under load.
  const large = new PreforkRig();
  readyStart = performance.now();
  await startRig(large, 32);
  const ready32 = Math.round(performance.now() - readyStart);
  const [master32] = await idle([large]);
  const { figures: deploy32Load } = await autocannonLoad(large.url, {
    seconds: 120,
    until: sleep(1000).then(() => large.step('deploy', 'releases/v2')),
  });
  const deploy32 = large.history.at(-1);
  await stopRig(large);
  results.footprint = {
    master4: { ...master4, readyMs: ready4 },
    pm2Daemon4: daemon4,
    master32: { ...master32, readyMs: ready32 },
  };
  results.scale = { readyMs: ready32, deploy: deploy32, load: deploy32Load };
  const row = (name: string, f: typeof master4, ready?: number) =>
    `| ${name} | ${ready ?? '—'} | ${f?.rssMb} | ${f?.anonMb} | ${f?.idleCpuPercent.toFixed(2)} % |`;
  out.push(
    'Supervisor processes after 15 s idle (RSS includes the pages of the `node` binary every Node process maps; "private" is `RssAnon`), CPU over the next 10 s idle:',
    '',
    '| process | workers ready in (ms) | RSS (MB) | of which private (MB) | idle CPU |',
    '| --- | --- | --- | --- | --- |',
    row('prefork master, 4 workers', master4, ready4),
    row(`PM2 ${pm2Version()} daemon, 4 instances`, daemon4),
    row('prefork master, 32 workers', master32, ready32),
    '',
    '## 5. Scale: 32 workers',
    '',
    `32 workers ready in ${ready32} ms (\`prefork start --daemon\` returns once all are ready). A deploy with 32 workers under keep-alive load at saturation: ${deploy32?.failed ? `**failed (${deploy32.failed})** after ` : ''}${deploy32?.totalMs} ms, ${deploy32Load.requests} requests, **${deploy32Load.failed} failed**${deploy32Load.failed > 0 ? ` (${kinds(deploy32Load)})` : ''}, p99 ${deploy32Load.p99} ms. Steps (ms): ${Object.entries(
      deploy32?.steps ?? {},
    )
      .map(([step, ms]) => `${step} ${ms}`)
      .join(', ')}.`,
    '',
  );

  // 6. p99 through one replacement, with hey; a chart per server.
  out.push('## 6. p99 through a deploy', '');
  const hey = ensureHey();
  if (hey === undefined) {
    out.push(
      'Skipped: hey is not installed (`apt-get install hey`), and this run could not install it.',
      '',
    );
  } else {
    const prefork = await startRig(new PreforkRig(), WORKERS);
    const pm2 = await startRig(new Pm2Rig(), WORKERS);
    const cluster = await startRig(new ClusterRig(), WORKERS);
    const charts = process.env.BENCH_CHARTS ?? 'docs/bench';
    const latency = await deployLatency(
      [
        ...preforkContenders(prefork),
        { name: pm2.name, slug: 'pm2', rig: pm2, replace: () => pm2.replaceOnce() },
        { name: cluster.name, slug: 'cluster', rig: cluster, replace: () => cluster.replaceOnce() },
      ],
      LATENCY_ROUNDS,
      charts,
    );
    for (const rig of [prefork, pm2, cluster]) await stopRig(rig);
    results.deployLatency = latency;
    out.push(
      `p99 of the answers that arrived while each server replaced its ${WORKERS} workers once, against p99 of the steady load before (from its second second), in the same run; ${LATENCY_ROUNDS} rounds, the contenders alternating. Load: hey ${hey}, ${LATENCY_CONNECTIONS} kept-alive connections at saturation, with a light sampler (autocannon, as many kept-alive connections, 1000 req/s in all) telling old workers' answers from new ones'. Targets: plain deploy ≤ 2, canary ≤ 1.5. Charts (the last round): ${latency.map((r) => `[${r.name}](${r.chart})`).join(', ')}.`,
      '',
      ...latencyTable(latency),
      '',
    );
  }
  out.push(
    PreforkRig.failures.length === 0
      ? 'Every prefork deploy and rollback of this run succeeded.'
      : `prefork commands that failed in this run (recorded, not retried): ${PreforkRig.failures.join('; ')}.`,
    '',
    `Run time: ${((Date.now() - began) / 60_000).toFixed(1)} min.`,
  );

  const file = process.env.BENCH_JSON ?? 'bench-results.json';
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`${out.join('\n')}\n`);
  process.stderr.write(`prefork bench: figures written to ${file}\n`);
}

main().then(
  () => process.exit(0),
  async (error: unknown) => {
    process.stderr.write(`prefork bench: ${(error as Error).stack ?? error}\n`);
    await Promise.all(started.map((rig) => rig.stop().catch(() => {})));
    process.exit(1);
  },
);
