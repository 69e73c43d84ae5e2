import { readFileSync } from 'node:fs';
import { stripVTControlCharacters } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { MasterStatus } from '../../src/control/schema.js';
import { emptyFigures, recordResponse } from '../../src/figures/figures.js';
import type { RequestFigures } from '../../src/protocol/figures.js';
import { noMoves } from '../../src/protocol/moves.js';
import { byRelease, CanaryTally, RateWindow, ratesBetween } from '../../src/view/rates.js';
import { renderFrame } from '../../src/view/screen.js';
import { VIEW_FORMAT, type ViewMaster, type ViewSnapshot } from '../../src/view/snapshot.js';

// What `prefork top` and the live page compute from two looks, and what top draws: pure
// functions, no process (the integration test drives both against real masters).

/** Figures of `ok` 200s taking `ms` each and `failed` 503s taking 0.3 s. */
function figures(ok: number, ms = 3, failed = 0): RequestFigures {
  const f = emptyFigures();
  for (let i = 0; i < ok; i += 1) recordResponse(f, 200, ms / 1000);
  for (let i = 0; i < failed; i += 1) recordResponse(f, 503, 0.3);
  return f;
}

function master(
  pid: number,
  release: string,
  state: MasterStatus['state'],
  f: RequestFigures | undefined,
  options: { uptime?: number; draining?: number; ready?: number } = {},
): ViewMaster {
  const worker = (i: number, workerState: 'ready' | 'draining') => ({
    pid: pid * 10 + i,
    release,
    kind: 'node' as const,
    generation: 1,
    state: workerState,
    tls: false,
    http: 'http/1.1' as const,
    requests: 0,
    rss: 0,
    age: 1,
    connections: { byKind: { http1_idle: 3 }, streams: 0 },
    closedAtDeadline: 0,
    ...(workerState === 'draining'
      ? { drainDeadline: 30_000, drained: { ...noMoves(), moved: 5 } }
      : {}),
  });
  const ready = options.ready ?? 2;
  const workers = [
    ...Array.from({ length: ready }, (_, i) => worker(i, 'ready')),
    ...Array.from({ length: options.draining ?? 0 }, (_, i) => worker(ready + i, 'draining')),
  ];
  const status = {
    pid,
    root: '/srv/app',
    release,
    version: `${release}.0`,
    releaseDir: '',
    state,
    closedAtDeadline: 0,
    drained: noMoves(),
    workersStopped: false,
    desiredWorkers: 2,
    uptime: options.uptime ?? 100,
    rss: 50 * 1024 * 1024,
    binds: ['127.0.0.1:8000'],
    oldMasterPid: null,
    newMasterPid: null,
    upgradeError: null,
    pidfile: '',
    heartbeatTimeout: 30,
    workerIdentity: null,
    metrics: '127.0.0.1:9464',
    traffic: [],
    workers,
  } satisfies MasterStatus;
  return {
    status,
    metrics: {
      pid,
      state,
      release,
      version: `${release}.0`,
      releases: [
        {
          release,
          version: `${release}.0`,
          kind: 'node',
          workers: { booting: 0, ready, draining: options.draining ?? 0 },
          rss: 0,
          exits: {},
          ...(f === undefined ? {} : { figures: f }),
          connections: { byKind: {}, streams: 0 },
          closedAtDeadline: 0,
          drained: noMoves(),
        },
      ],
    },
  };
}

const look = (at: number, masters: ViewMaster[], deploy: ViewSnapshot['deploy'] = null) =>
  ({ format: VIEW_FORMAT, at, root: '/srv/app', masters, deploy }) satisfies ViewSnapshot;

describe('rates between two looks', () => {
  it('are requests per second, 5xx share and p99 of what was counted in between', () => {
    const before = look(10_000, [master(1, 'v1', 'running', figures(100))]);
    const after = look(12_000, [master(1, 'v1', 'running', figures(300, 3, 4))]);
    const [rate] = ratesBetween(before, after);
    expect(rate?.rate).toBe(102);
    expect(rate?.errorShare).toBeCloseTo(4 / 204);
    // 4 of 204 at 0.3 s: the 99th percentile falls among them.
    expect(rate?.p99).toBeGreaterThan(0.25);
    expect(ratesBetween(undefined, after)).toEqual([]);
  });

  it('count a master started since the last look from zero, and skip one that did not answer then', () => {
    const before = look(10_000, [master(1, 'v1', 'old', figures(100))]);
    const after = look(12_000, [
      master(1, 'v1', 'old', figures(100)),
      master(2, 'v2', 'running', figures(40), { uptime: 2 }),
      master(3, 'v3', 'running', figures(5000), { uptime: 60 }),
    ]);
    const rates = ratesBetween(before, after);
    expect(rates.map((r) => [r.master, r.rate])).toEqual([
      [1, 0],
      [2, 20],
    ]);
  });

  it('add up the same release across masters (a rollback to the release an old master ran)', () => {
    const before = look(0, [
      master(1, 'v1', 'old', figures(0)),
      master(2, 'v1', 'running', figures(0)),
    ]);
    const after = look(1000, [
      master(1, 'v1', 'old', figures(10, 2)),
      master(2, 'v1', 'running', figures(30, 2)),
    ]);
    expect(byRelease(ratesBetween(before, after))).toEqual([
      { release: 'v1', rate: 40, errorShare: 0, p99: expect.any(Number) },
    ]);
  });

  it('span a window of looks, so heartbeats once a second do not make them swing', () => {
    const window = new RateWindow(3000);
    expect(window.push(look(0, [master(1, 'v1', 'running', figures(0))]))).toEqual([]);
    window.push(look(1000, [master(1, 'v1', 'running', figures(0))]));
    window.push(look(2000, [master(1, 'v1', 'running', figures(200))]));
    window.push(look(3000, [master(1, 'v1', 'running', figures(200))]));
    // Against the look at 0 (3 s before), not the one at 3000 (no heartbeat in between).
    const [rate] = window.push(look(3000.5, [master(1, 'v1', 'running', figures(200))]));
    expect(rate?.rate).toBeCloseTo(200 / 3.0005);
    const [later] = window.push(look(4000, [master(1, 'v1', 'running', figures(300))]));
    expect(later?.rate).toBe(100); // since the look at 1000
  });

  it('tally a canary step from its start, and start again at the next step', () => {
    const tally = new CanaryTally();
    const deploy = (stepAt: string) => ({
      kind: 'deploy' as const,
      release: 'v2',
      version: 'v2.0',
      previous: 'v1',
      step: 'canary' as const,
      startedAt: '2026-12-07T00:00:00.000Z',
      stepAt,
      canary: [],
    });
    const a = look(
      0,
      [master(1, 'v1', 'old', figures(0)), master(2, 'v2', 'running', figures(0))],
      deploy('s1'),
    );
    const b = look(
      1000,
      [master(1, 'v1', 'old', figures(90)), master(2, 'v2', 'running', figures(10, 20))],
      deploy('s1'),
    );
    tally.add(a, []);
    tally.add(b, ratesBetween(a, b));
    expect(tally.sides().map((s) => [s.release, s.responses])).toEqual([
      ['v1', 90],
      ['v2', 10],
    ]);
    const c = look(2000, b.masters, deploy('s2'));
    tally.add(c, ratesBetween(b, c));
    expect(tally.sides()).toEqual([]);
  });
});

describe('prefork top’s screen', () => {
  const old = master(1, 'v1', 'old', figures(100), { ready: 1, draining: 1 });
  const serving = master(2, 'v2', 'running', figures(300), { uptime: 5 });
  const before = look(Date.parse('2026-12-07T01:00:00Z'), [
    master(1, 'v1', 'old', figures(0)),
    master(2, 'v2', 'running', figures(0)),
  ]);
  const after = look(before.at + 2000, [serving, old], {
    kind: 'deploy',
    release: 'v2',
    version: 'v2.0',
    previous: 'v1',
    step: 'retire-old',
    startedAt: new Date(before.at - 3000).toISOString(),
    stepAt: new Date(before.at).toISOString(),
    canary: [],
  });
  const lines = renderFrame({
    snapshot: after,
    rates: ratesBetween(before, after),
    canary: [],
    width: 80,
    color: false,
    paused: false,
    keys: 'q quit, p pause',
  });

  it('shows the deploy’s step, both generations, their traffic and the old one’s drain', () => {
    const text = lines.join('\n');
    expect(text).toContain('deploy v2 (v2.0) from v1: step retire-old for 2s, 5s in');
    expect(text).toMatch(/master 2 running \[v2\] v2\.0, 2\/2 workers/);
    expect(text).toContain('[v2] 2 ready; 150.0 req/s, 0.0% 5xx, p99 ');
    expect(text).toContain('[v1] 1 ready, 1 draining; 50.0 req/s');
    expect(text).toContain('draining: 1 worker, 3 (HTTP/1.1 idle 3) left');
    expect(text).toContain('5 moved');
    expect(text.indexOf('master 2')).toBeLessThan(text.indexOf('master 1'));
  });

  it('fits the terminal, colours only when asked, and cuts by what is printed', () => {
    for (const width of [80, 40]) {
      const frame = renderFrame({
        snapshot: after,
        rates: [],
        canary: [],
        width,
        color: true,
        paused: true,
        keys: '',
      });
      expect(frame[0]).toContain('\x1b[');
      expect(frame[0]).toContain('PAUSED');
      for (const line of frame) {
        expect(stripVTControlCharacters(line).length).toBeLessThanOrEqual(width);
      }
    }
    expect(lines.join('\n')).not.toContain('\x1b');
  });
});

describe('the live page', () => {
  it('loads nothing from outside the metrics bind', () => {
    const html = readFileSync(new URL('../../src/view/page-html.ts', import.meta.url), 'utf8');
    const urls = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
    expect(urls.length).toBeGreaterThan(1);
    for (const url of urls) expect(url).toMatch(/^\/ui\//);
  });
});
