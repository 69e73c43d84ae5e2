/**
 * `npm run bench:h2`: HTTP/2 through a deploy. The p99 while `prefork deploy` replaces the
 * workers ÷ the steady p99 before it, for an h2c release under HTTP/2 clients (which reconnect
 * after a GOAWAY and retry refused streams, as browsers and gRPC channels do), beside the same
 * figure for the bundled HTTP/1.1 release under kept-alive HTTP/1.1 clients, with the same
 * harness, connections and concurrency. Numbers, not assertions; docs/benchmarks.md holds the
 * last recorded run. (h2load is not the client: it does not reconnect after a GOAWAY, and
 * counts the requests it then never sent as failed.)
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startH2Clients } from '../helpers/h2-clients.js';
import { h2cRelease } from '../helpers/h2-release.js';
import { REPO } from '../helpers/repo.js';
import { timedLoad } from './load.js';
import { freePort, median, must, sleep } from './rigs/rig.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = 32;
const STEADY_MS = 5000;
const PREFORK = join(REPO, 'bin/prefork');

type Timings = [number, number][];

function p99(timings: Timings, from: number, to: number): number {
  const values = timings.filter(([t]) => t >= from && t <= to).map(([, ms]) => ms);
  values.sort((a, b) => a - b);
  return values[Math.min(values.length - 1, Math.floor(0.99 * values.length))] ?? 0;
}

interface Round {
  ratio: number;
  steadyMs: number;
  deployMs: number;
  failed: number;
}

/** One deploy from `from` to `to` under the protocol's clients. */
async function round(protocol: 'h2c' | 'http/1.1'): Promise<Round> {
  const root = mkdtempSync(join(os.tmpdir(), 'prefork-bench-h2-'));
  const [from, to] = protocol === 'h2c' ? ['h2c-a', 'h2c-b'] : ['v1', 'v2'];
  for (const name of [from, to]) {
    const files =
      protocol === 'h2c'
        ? h2cRelease(name, 0)
        : {
            'package.json': { name: `bench-${name}`, version: '1.0.0', main: 'index.js' },
            'index.js': `module.exports = (req, res) => { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify({ release: ${JSON.stringify(name)}, pid: process.pid })); };\n`,
          };
    for (const [file, content] of Object.entries(files)) {
      const path = join(root, 'releases', name, file);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    }
  }
  const port = await freePort();
  try {
    await must(PREFORK, [
      'start',
      '--root',
      root,
      `releases/${from}`,
      '--bind',
      `127.0.0.1:${port}`,
      '--workers',
      '2',
      '--daemon',
    ]);
    const h2 =
      protocol === 'h2c'
        ? startH2Clients(`http://127.0.0.1:${port}`, {
            connections: CONNECTIONS,
            streams: 1,
            timed: true,
          })
        : undefined;
    const h1 = protocol === 'http/1.1' ? timedLoad(port, CONNECTIONS) : undefined;
    const timings = h2?.result.timings ?? h1?.timings ?? [];
    const begin = performance.now();
    await sleep(STEADY_MS);
    const deployAt = performance.now();
    await must(PREFORK, ['deploy', '--root', root, `releases/${to}`, '--verify-window', '1']);
    const doneAt = performance.now();
    await sleep(500);
    await (h2 ?? h1)?.stop();
    const failed = h2?.result.failed ?? h1?.failed() ?? 0;
    await must(PREFORK, ['stop', '--root', root]);
    const steady = p99(timings, begin + 1000, deployAt);
    return {
      ratio: p99(timings, deployAt, doneAt) / steady,
      steadyMs: steady,
      deployMs: doneAt - deployAt,
      failed,
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const rows = [
    '| protocol | p99 while replacing ÷ steady p99 | steady p99 (ms) | deploy (s) | failed requests (all rounds) |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const protocol of ['h2c', 'http/1.1'] as const) {
    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i += 1) rounds.push(await round(protocol));
    const m = (f: (r: Round) => number) => median(rounds.map(f));
    rows.push(
      `| ${protocol === 'h2c' ? 'HTTP/2 (h2c), 1 stream per connection' : 'HTTP/1.1 keep-alive'} | ${m((r) => r.ratio).toFixed(2)} (${rounds.map((r) => r.ratio.toFixed(2)).join(', ')}) | ${m((r) => r.steadyMs).toFixed(2)} | ${(m((r) => r.deployMs) / 1000).toFixed(1)} | ${rounds.reduce((n, r) => n + r.failed, 0)} |`,
    );
  }
  process.stdout.write(
    `${CONNECTIONS} connections, 2 workers, medians of ${ROUNDS} rounds, ${os.availableParallelism()} cores, Node ${process.version}.\n\n${rows.join('\n')}\n`,
  );
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`prefork bench: ${(error as Error).stack ?? error}\n`);
    process.exit(1);
  },
);
