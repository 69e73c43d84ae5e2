/**
 * `npm run bench`: numbers, not assertions. On loopback, in a temporary app root with the
 * bundled releases, it measures prefork against Node's cluster module (round-robin, the same
 * app, the same number of workers): throughput, failed requests while each replaces its
 * workers at saturation, latency during a deploy, a deploy's cost, the master's footprint, and
 * 32 workers. Prints a Markdown report and writes the raw figures as JSON
 * (`BENCH_JSON`, default `bench-results.json`). PM2 is not measured yet (issue 6).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type autocannonType from 'autocannon';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const PREFORK = join(REPO, 'bin/prefork');
const WORKERS = os.availableParallelism();
const CONNECTIONS = 50;

type Autocannon = typeof autocannonType;
let autocannon: Autocannon;

/** One autocannon run's figures. */
interface LoadFigures {
  requests: number;
  rps: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  p50: number;
  p99: number;
  max: number;
}

function figures(result: autocannonType.Result): LoadFigures {
  return {
    requests: result.requests.total,
    rps: Math.round(result.requests.average),
    errors: result.errors - result.timeouts,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    p50: result.latency.p50,
    p99: result.latency.p99,
    max: result.latency.max,
  };
}

/** Runs autocannon for `seconds` (or until `until` resolves) and returns its figures. */
async function load(
  url: string,
  options: { seconds: number; close?: boolean; until?: Promise<unknown> },
): Promise<LoadFigures> {
  const instance: autocannonType.Instance = autocannon(
    {
      url,
      connections: CONNECTIONS,
      duration: options.seconds,
      headers: options.close ? { connection: 'close' } : {},
    },
    () => {},
  );
  const done = new Promise<autocannonType.Result>((resolve) => instance.on('done', resolve));
  if (options.until) void options.until.then(() => instance.stop());
  return figures(await done);
}

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [PREFORK, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

async function must(args: string[]): Promise<string> {
  const result = await run(args);
  if (result.code !== 0)
    throw new Error(`prefork ${args[0]} failed (${result.code}): ${result.stderr}`);
  return result.stdout;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

/** RSS and private (anonymous) memory of a process, in MB, and its CPU time in ms. */
function footprint(pid: number): { rssMb: number; anonMb: number; cpuMs: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(stat[11]) + Number(stat[12]);
  return {
    rssMb: Math.round(kb('VmRSS') / 102.4) / 10,
    anonMb: Math.round(kb('RssAnon') / 102.4) / 10,
    cpuMs: ticks * 10,
  };
}

/** Every rig started, so that a failed run still stops what it started. */
const rigs: { stop(): Promise<void> }[] = [];

/** A prefork app root with a master running. */
class PreforkRig {
  readonly root = mkdtempSync(join(os.tmpdir(), 'prefork-bench-'));
  port = 0;

  constructor() {
    cpSync(join(REPO, 'releases'), join(this.root, 'releases'), { recursive: true });
    rigs.push(this);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  async start(workers: number): Promise<number> {
    this.port = await freePort();
    const started = Date.now();
    await must([
      'start',
      'releases/v1',
      '--root',
      this.root,
      '--bind',
      `127.0.0.1:${this.port}`,
      '-w',
      String(workers),
      '--daemon',
      '--log-file',
      join(this.root, 'prefork.log'),
    ]);
    return Date.now() - started;
  }

  masterPid(): number {
    return Number(readFileSync(join(this.root, 'prefork.pid'), 'utf8'));
  }

  /** deploy (or rollback) with --json; returns the step timings and the total. */
  async step(
    command: 'deploy' | 'rollback',
    release?: string,
  ): Promise<{ steps: Record<string, number>; totalMs: number }> {
    const started = Date.now();
    const out = await must([
      command,
      ...(release ? [release] : []),
      '--root',
      this.root,
      '--json',
      '--verify-window',
      '1',
    ]);
    const steps: Record<string, number> = {};
    for (const line of out.trim().split('\n')) {
      const event = JSON.parse(line) as {
        event?: string;
        status?: string;
        step?: string;
        ms?: number;
      };
      if (event.event === 'step' && event.status === 'done' && event.step)
        steps[event.step] = Number(event.ms);
    }
    return { steps, totalMs: Date.now() - started };
  }

  async stop(): Promise<void> {
    await run(['stop', '--quick', '--root', this.root]);
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Node's cluster module serving the same app: the primary accepts and hands out (round-robin). */
class ClusterRig {
  private primary: ChildProcess | undefined;
  private script = '';
  port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  async start(workers: number): Promise<void> {
    rigs.push(this);
    this.port = await freePort();
    const app = join(REPO, 'releases/v1/app.js');
    const code = `
      const cluster = require('node:cluster');
      const http = require('node:http');
      if (cluster.isPrimary) {
        let ready = 0;
        const fork = () => cluster.fork().on('listening', () => { if (++ready === ${workers}) process.send('ready'); });
        for (let i = 0; i < ${workers}; i++) fork();
        // Restart: a new worker per old one, the old one disconnected once the new one listens.
        process.on('message', async () => {
          for (const old of Object.values(cluster.workers)) {
            await new Promise((resolve) => cluster.fork().once('listening', resolve));
            old.disconnect();
          }
          process.send('restarted');
        });
      } else {
        http.createServer(require(${JSON.stringify(app)})).listen(${this.port}, '127.0.0.1');
      }`;
    // cluster forks its workers from a script file, so the program goes to one.
    this.script = join(mkdtempSync(join(os.tmpdir(), 'prefork-bench-cluster-')), 'cluster.cjs');
    writeFileSync(this.script, code);
    this.primary = spawn(process.execPath, [this.script], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    await new Promise((resolve) => this.primary?.once('message', resolve));
  }

  /** Restarts every worker the graceful way cluster offers (fork, then disconnect the old). */
  async restart(): Promise<void> {
    this.primary?.send('restart');
    await new Promise((resolve) => this.primary?.once('message', resolve));
  }

  async stop(): Promise<void> {
    this.primary?.kill('SIGKILL');
    await sleep(200);
    rmSync(join(this.script, '..'), { recursive: true, force: true });
  }
}

function failed(f: LoadFigures): number {
  return f.errors + f.timeouts + f.non2xx;
}

async function main(): Promise<void> {
  autocannon = ((await import('autocannon')) as { default: Autocannon }).default;
  const results: Record<string, unknown> = {};
  const lines: string[] = [];
  const started = Date.now();
  lines.push(
    '# prefork benchmarks',
    '',
    `Machine: ${os.cpus()[0]?.model ?? 'unknown'}, ${os.availableParallelism()} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB; ${os.type()} ${os.release()}. Node ${process.version}. Command: \`npm run bench\`. Load: autocannon, ${CONNECTIONS} connections, loopback. Workers: ${WORKERS} (= cores).`,
    '',
  );

  // 1. Throughput, alternating runs.
  const prefork = new PreforkRig();
  const cluster = new ClusterRig();
  await prefork.start(WORKERS);
  await cluster.start(WORKERS);
  const rps: { prefork: number[]; cluster: number[] } = { prefork: [], cluster: [] };
  for (let i = 0; i < 3; i += 1) {
    rps.prefork.push((await load(prefork.url, { seconds: 5 })).rps);
    rps.cluster.push((await load(cluster.url, { seconds: 5 })).rps);
  }
  const throughput = { prefork: median(rps.prefork), cluster: median(rps.cluster), runs: rps };
  results.throughput = throughput;
  lines.push(
    '## Throughput (keep-alive, median of 3 alternating 5 s runs)',
    '',
    '| server | req/s | ratio |',
    '| --- | --- | --- |',
    `| prefork | ${throughput.prefork} | ${(throughput.prefork / throughput.cluster).toFixed(2)}× cluster |`,
    `| Node cluster (round-robin) | ${throughput.cluster} | 1.00 |`,
    '',
  );

  // 2. Failed requests while workers are replaced, at saturation; 3. latency during a deploy.
  const steady = await load(prefork.url, { seconds: 5 });
  const upgrades: Record<string, LoadFigures> = {};
  for (const close of [false, true]) {
    const kind = close ? 'Connection: close' : 'keep-alive';
    const cycle = (async () => {
      await sleep(500);
      await prefork.step('deploy', 'releases/v2');
      await prefork.step('rollback');
      await prefork.step('deploy', 'releases/v2');
      await prefork.step('rollback');
    })();
    upgrades[`prefork deploy→rollback→deploy→rollback, ${kind}`] = await load(prefork.url, {
      seconds: 120,
      close,
      until: cycle,
    });
    const restarts = (async () => {
      await sleep(500);
      await cluster.restart();
      await cluster.restart();
    })();
    upgrades[`Node cluster, workers restarted twice, ${kind}`] = await load(cluster.url, {
      seconds: 120,
      close,
      until: restarts,
    });
  }
  results.upgrades = upgrades;
  lines.push(
    '## Failed requests while the workers are replaced, at saturation',
    '',
    '| scenario | requests | failed (errors / timeouts / non-2xx) | p50 | p99 | max (ms) |',
    '| --- | --- | --- | --- | --- | --- |',
    ...Object.entries(upgrades).map(
      ([name, f]) =>
        `| ${name} | ${f.requests} | ${failed(f)} (${f.errors} / ${f.timeouts} / ${f.non2xx}) | ${f.p50} | ${f.p99} | ${f.max} |`,
    ),
    '',
  );
  const during = upgrades['prefork deploy→rollback→deploy→rollback, keep-alive'] as LoadFigures;
  results.latency = { steadyP99: steady.p99, duringDeployP99: during.p99 };
  lines.push(
    '## Latency during deploys',
    '',
    `Steady p99 ${steady.p99} ms; p99 across two deploys and two rollbacks ${during.p99} ms: ratio ${(during.p99 / Math.max(1, steady.p99)).toFixed(2)} (target ≤ 2).`,
    '',
  );
  await cluster.stop();

  // 4. Deploy cost and the master's footprint.
  const deploy = await prefork.step('deploy', 'releases/v2');
  const steps = deploy.steps;
  const boot = steps['wait-ready'] ?? 0;
  const window = steps['verify-window'] ?? 0;
  results.deploy = { ...deploy, overheadMs: deploy.totalMs - boot - window };
  await prefork.stop();
  const footprints: Record<string, unknown> = {};
  for (const workers of [4, 32]) {
    const rig = new PreforkRig();
    const readyMs = await rig.start(workers);
    await sleep(15_000);
    const before = footprint(rig.masterPid());
    await sleep(10_000);
    const after = footprint(rig.masterPid());
    const scaled =
      workers === 32
        ? await rig.step('deploy', 'releases/v2').then(async (d) => {
            const f = await load(rig.url, { seconds: 60, until: rig.step('rollback') });
            return { deployMs: d.totalMs, rollbackLoad: f };
          })
        : undefined;
    footprints[workers] = {
      readyMs,
      rssMb: after.rssMb,
      anonMb: after.anonMb,
      idleCpuPercent: (after.cpuMs - before.cpuMs) / 100,
      scaled,
    };
    await rig.stop();
  }
  results.footprint = footprints;
  const f4 = footprints[4] as {
    rssMb: number;
    anonMb: number;
    idleCpuPercent: number;
    readyMs: number;
  };
  const f32 = footprints[32] as {
    rssMb: number;
    anonMb: number;
    idleCpuPercent: number;
    readyMs: number;
    scaled: { rollbackLoad: LoadFigures };
  };
  lines.push(
    "## A deploy's cost",
    '',
    `Total ${deploy.totalMs} ms: the new release's boot (wait-ready) ${boot} ms, verify window ${window} ms, prefork's own overhead ${deploy.totalMs - boot - window} ms (target < 1000). Steps: ${Object.entries(
      steps,
    )
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}.`,
    '',
    '## The master',
    '',
    '| workers | ready in (ms) | master RSS (MB) | of which private (MB) | idle CPU |',
    '| --- | --- | --- | --- | --- |',
    `| 4 | ${f4.readyMs} | ${f4.rssMb} | ${f4.anonMb} | ${f4.idleCpuPercent.toFixed(2)} % |`,
    `| 32 | ${f32.readyMs} | ${f32.rssMb} | ${f32.anonMb} | ${f32.idleCpuPercent.toFixed(2)} % |`,
    '',
    `With 32 workers, a rollback under load: ${f32.scaled.rollbackLoad.requests} requests, ${failed(f32.scaled.rollbackLoad)} failed.`,
    '',
    `Run time: ${((Date.now() - started) / 60_000).toFixed(1)} min.`,
  );
  const file = process.env.BENCH_JSON ?? 'bench-results.json';
  writeFileSync(
    file,
    `${JSON.stringify({ node: process.version, cores: os.availableParallelism(), ...results }, null, 2)}\n`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().then(
  () => process.exit(0),
  async (error: unknown) => {
    process.stderr.write(`prefork bench: ${(error as Error).stack ?? error}\n`);
    await Promise.all(rigs.map((rig) => rig.stop().catch(() => {})));
    process.exit(1);
  },
);
