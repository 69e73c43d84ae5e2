import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { startIdleClients } from '../helpers/idle-clients.js';
import { startLoad } from '../helpers/load.js';
import { startMaster } from '../helpers/master.js';
import { killAll, readPid, runPrefork, track } from '../helpers/processes.js';

// `npm run soak` (not part of npm test): SOAK_CYCLES deploy/rollback cycles back to back under
// keep-alive and Connection: close load, and SOAK_IDLE mostly idle kept-alive clients whose
// connections move at every switch. Results: docs/reliability.md.
const CYCLES = Number(process.env.SOAK_CYCLES ?? 100);
const IDLE = Number(process.env.SOAK_IDLE ?? 1000);
let root: AppRoot;

afterAll(() => {
  killAll();
  root?.remove();
});

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function rssKb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1]);
}

describe('soak', () => {
  it(`${CYCLES} deploy/rollback cycles: 0 failed requests, ${IDLE} idle connections moved at each switch, no fd or memory growth in the masters`, async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    const loads = [
      startLoad(master.url, { connections: 8, durationSec: 3600 }),
      startLoad(master.url, { connections: 2, durationSec: 3600, close: true }),
    ];
    const idle = await startIdleClients(master.url, IDLE);
    const samples: { cycle: number; pid: number; fds: number; rssKb: number }[] = [];
    const started = Date.now();
    for (let cycle = 1; cycle <= CYCLES; cycle += 1) {
      for (const [command, release] of [
        ['deploy', 'releases/v2'],
        ['rollback', undefined],
      ] as const) {
        const args = [
          command,
          ...(release ? [release] : []),
          '--root',
          root.dir,
          '--verify-window',
          '0',
        ];
        const run = await runPrefork(args);
        expect(run.code, `${command} in cycle ${cycle}: ${run.stderr}`).toBe(0);
      }
      const pid = readPid(root.path('prefork.pid')) as number;
      track(pid);
      samples.push({ cycle, pid, fds: fdCount(pid), rssKb: rssKb(pid) });
    }
    const results = await Promise.all(loads.map((l) => l.stop()));
    const idleResult = await idle.stop();
    const sent = results.reduce((n, r) => n + r.responses + r.errors, 0);
    const failed = results.reduce((n, r) => n + r.failed, 0);
    const first = samples[0];
    const last = samples.at(-1);
    const summary = {
      cycles: CYCLES,
      minutes: (Date.now() - started) / 60_000,
      sent,
      failed,
      first,
      last,
      idle: {
        clients: IDLE,
        opened: idleResult.opened,
        requests: idleResult.requests,
        failed: idleResult.failed,
        maxGapMs: idleResult.maxGapMs,
      },
    };
    console.log(`soak: ${JSON.stringify(summary)}`);
    expect(failed).toBe(0);
    expect(idleResult.failures).toEqual([]);
    // Every idle connection moved at every switch: none closed, so no client reconnected.
    expect(idleResult.opened).toBe(IDLE);
    // Each master is a fresh process: the 100th must look like the first.
    expect(last?.fds).toBeLessThanOrEqual((first?.fds ?? 0) + 2);
    expect(last?.rssKb).toBeLessThan((first?.rssKb ?? 0) * 1.25);
  });
});
