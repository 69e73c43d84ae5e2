/**
 * `npm run bench:viewer`: what watching a service costs its master (docs/live-view.md). Numbers,
 * not assertions.
 *
 * One master (4 workers, metrics on) under a steady light load; in alternating order, windows
 * of `WINDOW_S` with no viewer, with the live page's traffic (`GET /view.json` once a second,
 * what the page asks), and with `prefork top` (a look a second on the control socket). For
 * each: the master's CPU time per second, and the viewer's own.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import os from 'node:os';
import { join } from 'node:path';
import { REPO } from '../helpers/repo.js';
import { autocannonLoad } from './load.js';
import { PreforkRig } from './rigs/prefork-rig.js';
import { footprint, freePort, getEvery, median, sleep } from './rigs/rig.js';

const ROUNDS = 4;
const WINDOW_S = 15;
/** Requests per second of the steady load, over 8 kept-alive connections. */
const RATE = 200;

type Viewer = 'none' | 'page' | 'top';

async function main(): Promise<void> {
  const metricsPort = await freePort();
  const rig = new PreforkRig(0, ['--metrics-bind', `127.0.0.1:${metricsPort}`]);
  const cpuPerS: Record<Viewer, number[]> = { none: [], page: [], top: [] };
  const viewerCpuPerS: Record<Viewer, number[]> = { none: [], page: [], top: [] };
  let failedLooks = 0;
  try {
    await rig.start(4);
    const master = rig.supervisorPid();
    await autocannonLoad(rig.url, { seconds: 3, connections: 8, rate: RATE });
    for (let round = 0; round < ROUNDS; round += 1) {
      const order: Viewer[] = (['none', 'page', 'top'] as const).map(
        (_, i, all) => all[(i + round) % all.length] as Viewer,
      );
      for (const viewer of order) {
        let top: ChildProcess | undefined;
        const page = // What an open page asks: `/view.json` once a second.
          viewer === 'page'
            ? getEvery(`http://127.0.0.1:${metricsPort}/view.json`, 1000)
            : undefined;
        if (viewer === 'top') {
          top = spawn(
            process.execPath,
            [join(REPO, 'bin/prefork'), 'top', '--root', rig.root, '--interval', '1'],
            { stdio: 'ignore' },
          );
        }
        await sleep(1000);
        const before = footprint(master).cpuMs;
        const topBefore = top?.pid === undefined ? 0 : footprint(top.pid).cpuMs;
        await autocannonLoad(rig.url, { seconds: WINDOW_S, connections: 8, rate: RATE });
        cpuPerS[viewer].push((footprint(master).cpuMs - before) / WINDOW_S);
        if (top?.pid !== undefined) {
          viewerCpuPerS.top.push((footprint(top.pid).cpuMs - topBefore) / WINDOW_S);
          top.kill('SIGTERM');
        }
        if (page !== undefined) failedLooks += await page.stop();
      }
    }
  } finally {
    await rig.stop();
  }
  const none = median(cpuPerS.none);
  const row = (viewer: Viewer, label: string) =>
    `| ${label} | ${median(cpuPerS[viewer]).toFixed(1)} | ${viewer === 'none' ? '—' : `+${(median(cpuPerS[viewer]) - none).toFixed(1)}`} | ${cpuPerS[viewer].map((n) => n.toFixed(1)).join(', ')} |`;
  const out = [
    `# bench:viewer — ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, Node ${process.version}`,
    '',
    `One master, 4 workers, \`--metrics-bind\`, ${RATE} req/s over 8 kept-alive connections; ${ROUNDS} rounds of a ${WINDOW_S} s window per viewer, in rotating order. CPU time is read from /proc (10 ms ticks).`,
    '',
    "| viewer | master's CPU (ms per s), median | vs none | rounds |",
    '| --- | --- | --- | --- |',
    row('none', 'none'),
    row('page', 'the live page (`GET /view.json` once a second)'),
    row('top', '`prefork top` (a look a second)'),
    '',
    `\`prefork top\`'s own CPU: ${median(viewerCpuPerS.top).toFixed(1)} ms per s (median). Looks of the page that failed: ${failedLooks}.`,
    '',
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}

await main();
