/**
 * `npm run bench:instructions`: what a request costs a worker, in instructions counted by
 * valgrind's callgrind — a count, not a time, so the same for the same binary and inputs
 * whatever else the machine is doing (docs/benchmarks.md). Numbers, not assertions.
 *
 * Three servers of the bundled release v1, each alone in a process under callgrind, one worker:
 * prefork's worker with metrics off, with metrics on (`--metrics-bind`: each response counted by
 * status class and latency), and the same app on a bare `http.Server`. For each: `WARMUP`
 * requests (V8 optimises the hot paths), then the counters are zeroed, `MEASURED` requests are
 * sent on one kept-alive connection, and the counters are dumped: instructions per request are
 * that dump's total over `MEASURED`, heartbeats and timers of the interval included.
 * `INTERVALS` (6) intervals per process, one after another; the median of all but the first two
 * (V8 still tiering up) is compared.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  cpSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { join } from 'node:path';
import { REPO } from '../helpers/repo.js';
import { freePort, median, must, sleep, waitForHttp } from './rigs/rig.js';

const WARMUP = Number(process.env.WARMUP ?? 12000);
const MEASURED = Number(process.env.MEASURED ?? 4000);
/** Measured intervals per process, one after another: the spread shows whether V8 has settled. */
const INTERVALS = Number(process.env.INTERVALS ?? 6);
const PREFORK = join(REPO, 'bin/prefork');
const CALLGRIND = ['--tool=callgrind', '--dump-instr=no', '--compress-strings=no'];

/** `n` GETs of `/`, one after another on one kept-alive connection. */
async function requests(port: number, n: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < n; i += 1) {
      await new Promise<void>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
            res.resume();
            res.on('end', () =>
              res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`)),
            );
          })
          .on('error', reject);
      });
    }
  } finally {
    agent.destroy();
  }
}

/** The instructions callgrind's newest dump of `pid` in `dir` counted (its `totals:` line). */
function lastDump(dir: string, pid: number, before: Set<string>): number {
  const fresh = readdirSync(dir).filter(
    (f) => f.startsWith(`callgrind.out.${pid}`) && !before.has(f),
  );
  const file = fresh.sort().at(-1);
  if (file === undefined) throw new Error(`callgrind wrote no dump for pid ${pid} in ${dir}`);
  const totals = /^(?:totals|summary): (\d+)/m.exec(readFileSync(join(dir, file), 'utf8'));
  if (totals === null) throw new Error(`no totals line in ${file}`);
  return Number(totals[1]);
}

/** Zeroes `pid`'s counters, sends `MEASURED` requests, dumps: instructions per request. */
async function measure(dir: string, pid: number, port: number): Promise<number> {
  await must('callgrind_control', ['--zero', String(pid)]);
  await requests(port, MEASURED);
  const before = new Set(readdirSync(dir));
  await must('callgrind_control', ['--dump', String(pid)]);
  return lastDump(dir, pid, before) / MEASURED;
}

/** A server under callgrind, and how to reach and stop it. */
interface Subject {
  pid: number;
  port: number;
  stop(): Promise<void>;
}

/** The release on a bare `http.Server`, the whole process under callgrind. */
async function bare(dir: string, app: string): Promise<Subject> {
  const port = await freePort();
  const script = join(dir, 'bare.cjs');
  writeFileSync(
    script,
    `require('node:http').createServer(require(${JSON.stringify(app)})).listen(${port}, '127.0.0.1');\n`,
  );
  const child: ChildProcess = spawn(
    'valgrind',
    [
      ...CALLGRIND,
      `--callgrind-out-file=${join(dir, 'callgrind.out.%p')}`,
      process.execPath,
      script,
    ],
    { stdio: 'ignore' },
  );
  await waitForHttp(`http://127.0.0.1:${port}/health`, 300_000);
  return {
    pid: child.pid as number,
    port,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

/**
 * A prefork master (native) with one worker under callgrind: `--node` names a wrapper that
 * runs the worker's script under valgrind and anything else (the master, the checks) as is.
 */
async function prefork(dir: string, extra: string[]): Promise<Subject> {
  const root = mkdtempSync(join(dir, 'root-'));
  cpSync(join(REPO, 'releases'), join(root, 'releases'), { recursive: true });
  const wrapper = join(dir, 'node-callgrind');
  writeFileSync(
    wrapper,
    `#!/bin/sh
case "$1" in
  */worker/main.js) exec valgrind ${CALLGRIND.join(' ')} --callgrind-out-file=${join(dir, 'callgrind.out.%p')} ${process.execPath} "$@" ;;
esac
exec ${process.execPath} "$@"
`,
  );
  chmodSync(wrapper, 0o755);
  const port = await freePort();
  await must(process.execPath, [
    PREFORK,
    ...['start', 'releases/v1', '--root', root, '--bind', `127.0.0.1:${port}`, '--workers', '1'],
    ...['--daemon', '--log-file', join(root, 'prefork.log'), '--node', wrapper],
    ...['--boot-timeout', '600', '--timeout', '600'],
    ...extra,
  ]);
  const status = JSON.parse(
    await must(process.execPath, [PREFORK, 'status', '--json', '--root', root]),
  ) as { pidfiles: { master?: { workers: { pid: number }[] } }[] };
  const pid = status.pidfiles[0]?.master?.workers[0]?.pid;
  if (pid === undefined) throw new Error('the master has no worker');
  return {
    pid,
    port,
    async stop() {
      await must(process.execPath, [PREFORK, 'stop', '--quick', '--root', root]);
      rmSync(root, { recursive: true, force: true });
    },
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'prefork-instructions-'));
  const app = join(REPO, 'releases/v1/app.js');
  const metricsPort = await freePort();
  const cases: [string, () => Promise<Subject>][] = [
    ['the app on a bare `http.Server`', () => bare(dir, app)],
    ["prefork's worker, metrics off", () => prefork(dir, [])],
    [
      "prefork's worker, metrics on",
      () => prefork(dir, ['--metrics-bind', `127.0.0.1:${metricsPort}`]),
    ],
  ];
  const results: { label: string; runs: number[] }[] = [];
  try {
    for (const [label, start] of cases) {
      const subject = await start();
      try {
        await requests(subject.port, WARMUP);
        const runs: number[] = [];
        for (let i = 0; i < INTERVALS; i += 1)
          runs.push(await measure(dir, subject.pid, subject.port));
        results.push({ label, runs });
      } finally {
        await subject.stop();
      }
      await sleep(500);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // The median of the intervals after the first two: the first ones still pay for V8's tiering
  // up (about 2.5 and 1.2 times the settled count in the recorded run); the rest vary by a GC
  // cycle or a heartbeat falling in one interval or the next.
  const mean = (runs: number[]) => median(runs.slice(2));
  const bareMean = mean(results[0]?.runs ?? [1]);
  const offMean = mean(results[1]?.runs ?? [1]);
  const out = [
    `# bench:instructions — ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, valgrind callgrind`,
    '',
    `One worker, ${WARMUP} requests to warm up, then ${INTERVALS} intervals of ${MEASURED} requests on one kept-alive connection; instructions per request of each interval (the whole process: every thread, heartbeats and timers included).`,
    '',
    '| server | instructions per request, each interval | settled (median of 3rd–last) | vs bare app | vs metrics off |',
    '| --- | --- | --- | --- | --- |',
    ...results.map(
      ({ label, runs }) =>
        `| ${label} | ${runs.map((r) => Math.round(r).toLocaleString('en-US')).join(', ')} | ${Math.round(mean(runs)).toLocaleString('en-US')} | ${((mean(runs) / bareMean - 1) * 100).toFixed(1)} % | ${((mean(runs) / offMean - 1) * 100).toFixed(1)} % |`,
    ),
    '',
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

await main();
