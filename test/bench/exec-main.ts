/**
 * `npm run bench:exec`: an exec release (the Go server of `docs/examples/go`, built with the
 * machine's Go) served by prefork, against the same binary run the way its users run it today.
 *
 * 1. Throughput: prefork with one worker vs the binary alone on a socket handed over by
 *    `systemd-socket-activate` (one process each), alternating runs, keep-alive. prefork is not
 *    in the data path, so the ratio should be about 1.
 * 2. Replacing the running binary under keep-alive load: `prefork deploy` vs a restart of a
 *    socket-activated service (`systemctl restart`: stop, then start; systemd holds the socket
 *    meanwhile), simulated with `systemd-socket-activate` holding the socket and a loop that
 *    starts the server again once it exits. Failed requests, p99 in the swap, longest wait.
 *
 * Prints a Markdown report; docs/benchmarks.md holds the last recorded run.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { REPO } from '../helpers/repo.js';
import { autocannonLoad, CONNECTIONS, type LoadFigures, windowQuantile } from './load.js';
import { freePort, median, must, run, sleep, waitForHttp } from './rigs/rig.js';

const PREFORK = join(REPO, 'bin/prefork');
const ROUNDS = 5;
const SECONDS = 5;

/** A server under test: its URL, how to replace its binary, how to stop it. */
interface Served {
  url: string;
  replace(): Promise<void>;
  stop(): Promise<void>;
}

/** Builds the Go example into `dir/server`. */
function buildGo(dir: string): string {
  const binary = join(dir, 'server');
  execFileSync('go', ['build', '-o', binary, '.'], {
    cwd: join(REPO, 'docs/examples/go'),
    env: {
      ...process.env,
      GOFLAGS: '-buildvcs=false',
      GOCACHE: join(dir, 'go-cache'),
      GOPATH: join(dir, 'gopath'),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return binary;
}

/** A prefork app root with releases g1 and g2 (the same binary), master on g1. */
async function startPrefork(dir: string, binary: string, workers: number): Promise<Served> {
  const root = join(dir, `prefork-${workers}`);
  for (const name of ['g1', 'g2']) {
    mkdirSync(join(root, 'releases', name), { recursive: true });
    copyFileSync(binary, join(root, 'releases', name, 'server'));
    chmodSync(join(root, 'releases', name, 'server'), 0o755);
    writeFileSync(join(root, 'releases', name, 'prefork.json'), '{"command": ["./server"]}');
  }
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const args = ['--root', root];
  await must(process.execPath, [
    PREFORK,
    'start',
    'releases/g1',
    ...args,
    '--bind',
    `127.0.0.1:${port}`,
    '--workers',
    String(workers),
    '--daemon',
  ]);
  await waitForHttp(url);
  let next = 'g2';
  return {
    url,
    async replace() {
      await must(process.execPath, [
        PREFORK,
        'deploy',
        `releases/${next}`,
        ...args,
        '--verify-window',
        '1',
      ]);
      next = next === 'g2' ? 'g1' : 'g2';
    },
    async stop() {
      await run(process.execPath, [PREFORK, 'stop', ...args]);
    },
  };
}

/**
 * The binary alone on a socket `systemd-socket-activate` holds, restarted the way `systemctl
 * restart` does it: SIGTERM, wait for the exit, start again (a loop, which keeps the socket).
 */
async function startAlone(dir: string, binary: string): Promise<Served> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const holder: ChildProcess = spawn(
    'systemd-socket-activate',
    [
      '-l',
      `127.0.0.1:${port}`,
      'sh',
      '-c',
      `while :; do sh -c 'export LISTEN_PID=$$; exec "$0"' ${binary}; done`,
    ],
    { cwd: dir, stdio: ['ignore', 'ignore', 'ignore'] },
  );
  const serverPid = () =>
    Number(
      readFileSync(`/proc/${holder.pid}/task/${holder.pid}/children`, 'utf8').trim().split(' ')[0],
    );
  await waitForHttp(url);
  return {
    url,
    async replace() {
      const pid = serverPid();
      process.kill(pid, 'SIGTERM');
      for (;;) {
        const now = serverPid();
        if (now && now !== pid) break;
        await sleep(5);
      }
      await waitForHttp(url);
    },
    async stop() {
      const pid = serverPid();
      holder.kill('SIGKILL');
      if (pid) process.kill(pid, 'SIGKILL');
    },
  };
}

/** Keep-alive load for a while, with the binary replaced 1.5 s in: figures, swap p99, swap time. */
async function swapRun(
  served: Served,
): Promise<{ figures: LoadFigures; swapP99: number; swapMs: number }> {
  let window: [number, number] = [0, 0];
  const swap = (async () => {
    await sleep(1500);
    const from = performance.now();
    await served.replace();
    window = [from, performance.now()];
    await sleep(1500);
  })();
  const { figures, samples } = await autocannonLoad(served.url, { seconds: 60, until: swap });
  return {
    figures,
    swapP99: windowQuantile(samples, [window], 0.99),
    swapMs: Math.round(window[1] - window[0]),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'prefork-bench-exec-'));
  const stops: Served[] = [];
  try {
    const binary = buildGo(dir);
    const goVersion = execFileSync('go', ['version'], { encoding: 'utf8' }).trim();
    const lines = [
      `# exec release bench (${goVersion}, ${CONNECTIONS} keep-alive connections)`,
      '',
    ];

    const prefork1 = await startPrefork(dir, binary, 1);
    stops.push(prefork1);
    const alone = await startAlone(dir, binary);
    stops.push(alone);
    const rps = { prefork: [] as number[], alone: [] as number[] };
    for (let round = 0; round < ROUNDS; round += 1) {
      rps.prefork.push((await autocannonLoad(prefork1.url, { seconds: SECONDS })).figures.rps);
      rps.alone.push((await autocannonLoad(alone.url, { seconds: SECONDS })).figures.rps);
    }
    const ratio = median(rps.prefork) / median(rps.alone);
    lines.push(
      '## Throughput: one Go process each, keep-alive',
      '',
      '| server | req/s per run | median |',
      '| --- | --- | --- |',
      `| prefork, 1 exec worker | ${rps.prefork.join(', ')} | ${median(rps.prefork)} |`,
      `| the binary alone (systemd-socket-activate) | ${rps.alone.join(', ')} | ${median(rps.alone)} |`,
      '',
      `prefork ÷ alone: **${ratio.toFixed(3)}**`,
      '',
      '## Replacing the binary under keep-alive load',
      '',
      '| how | run | requests | failed | p99 steady+swap (ms) | p99 during the swap (ms) | max (ms) | swap took (ms) |',
      '| --- | --- | --- | --- | --- | --- | --- | --- |',
    );
    for (let run = 1; run <= 2; run += 1) {
      for (const [how, served] of [
        ['prefork deploy', prefork1],
        ['restart (stop, start; socket held)', alone],
      ] as const) {
        const r = await swapRun(served);
        const failed =
          r.figures.failed === 0
            ? '0'
            : `${r.figures.failed} (${Object.entries(r.figures.failedByKind)
                .map(([k, n]) => `${k} ${n}`)
                .join(', ')})`;
        lines.push(
          `| ${how} | ${run} | ${r.figures.requests} | ${failed} | ${r.figures.p99} | ${r.swapP99.toFixed(1)} | ${r.figures.max} | ${r.swapMs} |`,
        );
      }
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    for (const served of stops) await served.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`prefork bench:exec: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
