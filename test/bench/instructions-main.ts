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
 * (V8 still tiering up) is compared. Then `IDLE_SECONDS` with no request: the server's timers'
 * instructions per second, which each busy interval pays for as long as it lasts — tens of times
 * longer under valgrind than natively — and which the second table takes out of its count.
 * `KEEP_DUMPS=1` keeps the dumps for `callgrind_annotate`.
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
/**
 * Seconds each server is counted with no request at all: what its timers cost per second
 * (prefork's worker: the heartbeat, the fd probe; the bare app: nothing), which the busy
 * intervals also pay, per second of valgrind's slowed-down time rather than per request.
 */
const IDLE_SECONDS = Number(process.env.IDLE_SECONDS ?? 20);
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

/** V8's optimizing compiler at work on a background thread, as callgrind names the function. */
const COMPILE_TASK = 'OptimizingCompileDispatcher::CompileTask::RunInternal';

/**
 * What callgrind's newest dump of `pid` in `dir` counted: every instruction (its `totals:`
 * line), and those of V8's optimizing compiler's background jobs (callgrind_annotate's
 * inclusive count of its task).
 */
async function lastDump(
  dir: string,
  pid: number,
  before: Set<string>,
): Promise<{ instructions: number; compiling: number }> {
  const fresh = readdirSync(dir).filter(
    (f) => f.startsWith(`callgrind.out.${pid}`) && !before.has(f),
  );
  const file = fresh.sort().at(-1);
  if (file === undefined) throw new Error(`callgrind wrote no dump for pid ${pid} in ${dir}`);
  const path = join(dir, file);
  const totals = /^(?:totals|summary): (\d+)/m.exec(readFileSync(path, 'utf8'));
  if (totals === null) throw new Error(`no totals line in ${file}`);
  const annotated = await must('callgrind_annotate', ['--inclusive=yes', '--threshold=100', path]);
  const line = annotated.split('\n').find((l) => l.includes(COMPILE_TASK));
  const compiling =
    line === undefined ? 0 : Number(/^\s*([\d,]+)/.exec(line)?.[1]?.replace(/,/g, ''));
  return { instructions: Number(totals[1]), compiling };
}

/** What one interval counted: the whole process's instructions, over how long. */
interface Interval {
  instructions: number;
  /** Of those, V8's optimizing compiler's background jobs. */
  compiling: number;
  seconds: number;
}

/** Zeroes `pid`'s counters, runs `work`, dumps: the instructions counted and the time taken. */
async function counted(dir: string, pid: number, work: () => Promise<void>): Promise<Interval> {
  await must('callgrind_control', ['--zero', String(pid)]);
  const started = performance.now();
  await work();
  const seconds = (performance.now() - started) / 1000;
  const before = new Set(readdirSync(dir));
  await must('callgrind_control', ['--dump', String(pid)]);
  return { ...(await lastDump(dir, pid, before)), seconds };
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

/** A server's intervals: busy ones of `MEASURED` requests each, then one with no request. */
interface Counted {
  label: string;
  busy: Interval[];
  idle: Interval;
}

/** Instructions per request of a busy interval: the whole process's. */
const perRequest = (interval: Interval) => interval.instructions / MEASURED;

/**
 * Instructions per request of a busy interval without V8's optimizing compiler's background
 * jobs: a one-time cost of warming up, which valgrind's slowness spreads over later intervals
 * (a job of 17 or 57 million instructions lands in one interval or another, or in none).
 */
const steadyPerRequest = (interval: Interval) =>
  (interval.instructions - interval.compiling) / MEASURED;

/** Instructions per second the server spends with no request (its timers), compiler aside. */
const idlePerSecond = (c: Counted) => (c.idle.instructions - c.idle.compiling) / c.idle.seconds;

/**
 * {@link steadyPerRequest} net of the server's idle cost over the interval's length: what the
 * requests themselves cost, which valgrind's slowdown (tens of times) does not inflate the way
 * it inflates the timers' share of the whole count.
 */
const netPerRequest = (c: Counted, interval: Interval) =>
  steadyPerRequest(interval) - (idlePerSecond(c) * interval.seconds) / MEASURED;

/**
 * The median of the intervals after the first two: the first ones still pay for V8's tiering
 * up (about 2.5 and 1.2 times the settled count in the recorded runs).
 */
const settled = (values: number[]) => median(values.slice(2));

const count = (n: number) => Math.round(n).toLocaleString('en-US');
const percent = (a: number, b: number) => `${((a / b - 1) * 100).toFixed(1)} %`;

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
  const results: Counted[] = [];
  try {
    for (const [label, start] of cases) {
      const subject = await start();
      try {
        await requests(subject.port, WARMUP);
        const busy: Interval[] = [];
        for (let i = 0; i < INTERVALS; i += 1)
          busy.push(await counted(dir, subject.pid, () => requests(subject.port, MEASURED)));
        const idle = await counted(dir, subject.pid, () => sleep(IDLE_SECONDS * 1000));
        results.push({ label, busy, idle });
      } finally {
        await subject.stop();
      }
      await sleep(500);
    }
  } finally {
    // KEEP_DUMPS=1: the dumps stay, for callgrind_annotate to say where the instructions go.
    if (process.env.KEEP_DUMPS === '1') process.stderr.write(`callgrind dumps kept in ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
  const whole = (c: Counted) => settled(c.busy.map(perRequest));
  const steady = (c: Counted) => settled(c.busy.map(steadyPerRequest));
  const net = (c: Counted) => settled(c.busy.map((b) => netPerRequest(c, b)));
  // Every case ran (a failing one threw): the bare app first, then metrics off.
  const [bareApp, off] = results as [Counted, Counted];
  const versus = (of: (c: Counted) => number, c: Counted) =>
    `${count(of(c))} | ${percent(of(c), of(bareApp))} | ${percent(of(c), of(off))}`;
  const out = [
    `# bench:instructions — ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, valgrind callgrind`,
    '',
    `One worker, ${WARMUP} requests to warm up, then ${INTERVALS} intervals of ${MEASURED} requests on one kept-alive connection, then ${IDLE_SECONDS} s with no request. Settled: the median of the 3rd to the last interval.`,
    '',
    'The whole process, every thread, timers included:',
    '',
    '| server | instructions per request, each interval | settled | vs bare app | vs metrics off |',
    '| --- | --- | --- | --- | --- |',
    ...results.map(
      (c) =>
        `| ${c.label} | ${c.busy.map((b) => count(perRequest(b))).join(', ')} | ${versus(whole, c)} |`,
    ),
    '',
    "Without V8's optimizing compiler's background jobs (a warm-up cost that valgrind spreads over later intervals); then also net of what the server spends per second with no request (its timers), over each interval's length:",
    '',
    '| server | optimizing compiler, per request, each interval | instructions per request, each interval | settled | vs bare app | vs metrics off | idle, per second | net of idle, settled | vs bare app | vs metrics off |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.map(
      (c) =>
        `| ${c.label} | ${c.busy.map((b) => count(b.compiling / MEASURED)).join(', ')} | ${c.busy.map((b) => count(steadyPerRequest(b))).join(', ')} | ${versus(steady, c)} | ${count(idlePerSecond(c))} | ${versus(net, c)} |`,
    ),
    '',
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

await main();
