import { existsSync, readFileSync, symlinkSync } from 'node:fs';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { NotifyDir } from '../../src/exec/notify-dir.js';
import { notifyMessages } from '../../src/exec/notify-message.js';
import { emptyFigures, recordResponse } from '../../src/figures/figures.js';
import { Handover } from '../../src/handover/handover.js';
import { type NewMaster, UpgradeRefused } from '../../src/handover/new-master.js';
import type { MasterEffects } from '../../src/master/effects.js';
import { Master } from '../../src/master/master.js';
import type { MasterEvent } from '../../src/master/master-parts.js';
import type { MasterMessage } from '../../src/protocol/ipc.js';
import { readCurrentRelease } from '../../src/release/current-link.js';
import {
  newWorkerRecord,
  type SpawnWorkerOptions,
  type WorkerRecord,
} from '../../src/worker-kind/worker-record.js';
import { type AppRoot, makeAppRoot, switchCurrent } from '../helpers/app-root.js';

// The master's decisions, driven through events with no process: every spawn, signal and exit
// is recorded by a fake world instead of being done, and the clock only moves when told.

/** Records what the master does; pids start at 100 in spawn order. */
class FakeWorld implements MasterEffects {
  clock = 1_000_000;
  actions: string[] = [];
  title = '';
  exitCode: number | undefined;
  private nextPid = 100;

  now(): number {
    return this.clock;
  }

  /** What each spawned worker was told (its `WorkerOptions`). */
  told = new Map<number, SpawnWorkerOptions['worker']>();

  spawnWorker(options: SpawnWorkerOptions): WorkerRecord {
    const pid = this.nextPid++;
    this.told.set(pid, options.worker);
    this.actions.push(`spawn ${pid} ${options.release.name}`);
    return newWorkerRecord(pid, { send: () => true }, options, this.clock);
  }

  signalWorker(worker: WorkerRecord, signal: NodeJS.Signals): void {
    this.actions.push(`${signal.slice(3)} ${worker.pid}`);
  }

  sendWorker(worker: WorkerRecord, message: MasterMessage): void {
    this.actions.push(`send ${worker.pid} ${JSON.stringify(message)}`);
  }

  startUpgrade(): NewMaster {
    throw new UpgradeRefused('no new master in unit tests');
  }

  setTitle(title: string): void {
    this.title = title;
  }

  exit(code: number): void {
    this.exitCode = code;
  }

  /** RSS an exec worker has, as `/proc` would say. */
  rss = new Map<number, number>();

  processRss(pid: number): number {
    return this.rss.get(pid) ?? 0;
  }

  /** The actions since the last call. */
  take(): string[] {
    const taken = this.actions;
    this.actions = [];
    return taken;
  }
}

let root: AppRoot;
/** Every app root a test made (some make two), removed after it. */
const roots: AppRoot[] = [];

afterEach(() => {
  for (const made of roots.splice(0)) made.remove();
});

/**
 * A master on releases/v1 of a fresh app root (or on an exec release whose `prefork.json`
 * is `exec`), with `workers` workers, not booted yet.
 */
function makeMaster(
  workers = 2,
  timeout = 30,
  exec?: Record<string, unknown>,
  cli: Record<string, unknown> = {},
  handoverEnv: NodeJS.ProcessEnv = {},
): { master: Master; world: FakeWorld } {
  root = makeAppRoot();
  roots.push(root);
  if (exec !== undefined) root.addRelease('x1', { 'prefork.json': exec });
  symlinkSync(exec === undefined ? 'releases/v1' : 'releases/x1', root.path('current'));
  const sources = { root: root.dir, cli: { workers, timeout, ...cli } };
  const world = new FakeWorld();
  const master = new Master({
    config: loadConfig(sources),
    configSources: sources,
    release: readCurrentRelease(root.dir),
    sockets: [],
    // Logs go nowhere (HUP sets the level from the configuration).
    log: { logger: pino({}, { write: () => {} }), reopen: () => {} },
    command: { execPath: process.execPath, args: [], cwd: root.dir, env: {} },
    workerEnv: {},
    handover: Handover.from(handoverEnv),
    interactive: false,
    control: undefined,
    metrics: undefined,
    identity: undefined,
    notifyDir: new NotifyDir(root.path('.prefork'), undefined),
    effects: world,
  });
  return { master, world };
}

const tick: MasterEvent = { kind: 'tick' };
const signal = (name: 'SIGHUP' | 'SIGTTOU' | 'SIGWINCH' | 'SIGQUIT' | 'SIGUSR1'): MasterEvent => ({
  kind: 'signal',
  signal: name,
});
const ready = (pid: number): MasterEvent => ({
  kind: 'worker-message',
  pid,
  message: { type: 'ready', tls: false, http: 'http/1.1', moves: false },
});
const heartbeat = (pid: number): MasterEvent => ({
  kind: 'worker-message',
  pid,
  message: { type: 'heartbeat', requests: 0, rss: 0 },
});
const exited = (pid: number, code = 1): MasterEvent => ({
  kind: 'worker-exit',
  pid,
  code,
  signal: null,
});

/** Boots `master`: its first workers spawned and ready (pids 100, 101, ...). */
function boot(master: Master, world: FakeWorld, workers = 2): void {
  master.dispatch(tick);
  for (let pid = 100; pid < 100 + workers; pid += 1) master.dispatch(ready(pid));
  world.take();
}

describe('master decisions (no processes)', () => {
  it('boots the desired workers and writes the pidfile only once every one is ready', () => {
    const { master, world } = makeMaster(2);
    master.dispatch(tick);
    expect(world.take()).toEqual(['spawn 100 v1', 'spawn 101 v1']);
    master.dispatch(ready(100));
    expect(existsSync(root.path('prefork.pid'))).toBe(false);
    expect(master.status().state).toBe('booting');
    master.dispatch(ready(101));
    expect(readFileSync(root.path('prefork.pid'), 'utf8').trim()).toBe(String(process.pid));
    expect(master.status().state).toBe('running');
  });

  it('a canary deploy’s new master starts with the first step’s count, in canary mode, until told otherwise', () => {
    // Started by USR2 (an old master's pid) for a canary: 1 worker instead of the configured 3.
    const { master, world } = makeMaster(
      3,
      30,
      undefined,
      {},
      {
        PREFORK_PARENT_PID: String(process.pid),
        PREFORK_CANARY_WORKERS: '1',
      },
    );
    master.dispatch(tick);
    expect(world.take()).toEqual(['spawn 100 v1']);
    master.dispatch(ready(100));
    expect(master.status()).toMatchObject({
      desiredWorkers: 1,
      configuredWorkers: 3,
      canary: true,
    });
    expect(world.told.get(100)).toMatchObject({ canary: true, metrics: false });
    // The canary ends: the running worker is told, and the next ones are spawned without it.
    expect(master.control({ cmd: 'canary', on: false })).toEqual({ canary: false });
    expect(world.take()).toEqual(['send 100 {"type":"canary","on":false}']);
    expect(master.control({ cmd: 'scale', workers: 2 })).toEqual({ workers: 2 });
    master.dispatch(tick);
    expect(world.take()).toEqual(['spawn 101 v1']);
    expect(world.told.get(101)).toMatchObject({ canary: false });
    // A master not started for a canary starts with its configured count.
    const plain = makeMaster(3, 30, undefined, {}, { PREFORK_CANARY_WORKERS: '1' });
    plain.master.dispatch(tick);
    expect(plain.world.take()).toEqual(['spawn 100 v1', 'spawn 101 v1', 'spawn 102 v1']);
  });

  it('a worker that dies before the master is ready fails the boot: workers told to stop, exit 1', () => {
    const { master, world } = makeMaster(2);
    master.dispatch(tick);
    world.take();
    master.dispatch(exited(100));
    expect(world.take()).toEqual(['TERM 101']);
    master.dispatch(exited(101, 0));
    expect(world.exitCode).toBe(1);
    expect(existsSync(root.path('prefork.pid'))).toBe(false);
  });

  it('replaces a dead worker at once, then backs off exponentially while workers die young', () => {
    const { master, world } = makeMaster(2);
    boot(master, world);
    master.dispatch(exited(100));
    expect(world.take()).toEqual(['spawn 102 v1']);
    // Dies at once too: the second death in a row waits 100 ms, the third 200 ms.
    master.dispatch(exited(102));
    expect(world.take()).toEqual([]);
    world.clock += 99;
    master.dispatch(tick);
    expect(world.take()).toEqual([]);
    world.clock += 1;
    master.dispatch(tick);
    expect(world.take()).toEqual(['spawn 103 v1']);
    master.dispatch(exited(103));
    world.clock += 199;
    master.dispatch(tick);
    expect(world.take()).toEqual([]);
    world.clock += 1;
    master.dispatch(tick);
    expect(world.take()).toEqual(['spawn 104 v1']);
    // Ready and alive for 10 s: the streak is forgotten, the next death is replaced at once.
    master.dispatch(ready(104));
    world.clock += 10_001;
    master.dispatch(heartbeat(101));
    master.dispatch(heartbeat(104));
    master.dispatch(tick);
    master.dispatch(exited(104));
    expect(world.take()).toEqual(['spawn 105 v1']);
  });

  it('counts each worker exit by reason and keeps the figures of exited workers in their release', () => {
    const { master, world } = makeMaster(2, 2);
    boot(master, world);
    const served = emptyFigures();
    for (let i = 0; i < 5; i += 1) recordResponse(served, 200, 0.01);
    recordResponse(served, 502, 0.2);
    master.dispatch({
      kind: 'worker-message',
      pid: 100,
      message: { type: 'heartbeat', requests: 6, rss: 10, figures: served },
    });
    // A malformed figure set from a worker is ignored, not added up.
    master.dispatch({
      kind: 'worker-message',
      pid: 101,
      message: { type: 'heartbeat', requests: 1, rss: 10, figures: { codes: [1] } as never },
    });
    master.dispatch(exited(100));
    const v1 = () => master.metricsShare().releases.find((r) => r.release === 'v1');
    expect(v1()?.exits).toEqual({ crashed: 1 });
    expect(v1()?.figures?.codes).toEqual([0, 5, 0, 0, 1]);
    // 102 replaces 100 but never becomes ready (boot_failed at bootTimeout); 101 goes silent
    // past the 2 s heartbeat timeout (hung); both are killed.
    expect(world.take()).toEqual(['spawn 102 v1']);
    world.clock += 2001;
    master.dispatch(tick);
    expect(world.take()).toEqual(['KILL 101']);
    master.dispatch(exited(101, 0));
    world.clock += 60_000;
    master.dispatch(tick);
    expect(world.take()).toContain('KILL 102');
    master.dispatch(exited(102, 0));
    expect(v1()?.exits).toEqual({ crashed: 1, hung: 1, boot_failed: 1 });
    // HUP: the old generation (what crash backoff has respawned so far) drains and exits.
    for (const event of world.take()) expect(event).toMatch(/^spawn/);
    const fresh = master.status().workers.map((w) => w.pid);
    for (const pid of fresh) master.dispatch(ready(pid));
    switchCurrent(root, 'v2');
    master.dispatch(signal('SIGHUP'));
    const v2 = world.take().map((a) => Number(a.split(' ')[1]));
    for (const pid of v2) master.dispatch(ready(pid));
    expect(world.take()).toEqual(fresh.map((pid) => `QUIT ${pid}`));
    for (const pid of fresh) master.dispatch(exited(pid, 0));
    expect(fresh.length).toBeGreaterThan(0);
    expect(v1()?.exits).toEqual({ crashed: 1, hung: 1, boot_failed: 1, drained: fresh.length });
    expect(v1()?.workers).toEqual({ booting: 0, ready: 0, draining: 0 });
    expect(master.metricsShare().releases.find((r) => r.release === 'v2')?.workers.ready).toBe(2);
  });

  it('HUP boots a new generation first and drains the old one only once it is ready', () => {
    const { master, world } = makeMaster(2);
    boot(master, world);
    switchCurrent(root, 'v2');
    master.dispatch(signal('SIGHUP'));
    expect(world.take()).toEqual(['spawn 102 v2', 'spawn 103 v2']);
    master.dispatch(ready(102));
    expect(world.take()).toEqual([]);
    master.dispatch(ready(103));
    expect(world.take()).toEqual(['QUIT 100', 'QUIT 101']);
    expect(master.status().release).toBe('v2');
    // `ps` shows the release the workers run now.
    expect(world.title).toBe('prefork: master [v2]');
  });

  it('HUP whose new worker dies while booting is abandoned: the old generation serves on', () => {
    const { master, world } = makeMaster(2);
    boot(master, world);
    switchCurrent(root, 'v2');
    master.dispatch(signal('SIGHUP'));
    world.take();
    master.dispatch(exited(102));
    expect(world.take()).toEqual(['QUIT 103']);
    expect(master.status().release).toBe('v1');
    // Nothing more is spawned, and the old workers were never told to drain.
    master.dispatch(exited(103, 0));
    world.clock += 60_000;
    master.dispatch(heartbeat(100));
    master.dispatch(heartbeat(101));
    master.dispatch(tick);
    expect(world.take()).toEqual([]);
  });

  it('WINCH drains every worker and spawns none until HUP brings them back', () => {
    const { master, world } = makeMaster(2);
    boot(master, world);
    master.dispatch(signal('SIGWINCH'));
    expect(world.take()).toEqual(['QUIT 100', 'QUIT 101']);
    master.dispatch(exited(100, 0));
    master.dispatch(exited(101, 0));
    master.dispatch(tick);
    expect(world.take()).toEqual([]);
    expect(master.status().workersStopped).toBe(true);
    master.dispatch(signal('SIGHUP'));
    expect(world.take()).toEqual(['spawn 102 v1', 'spawn 103 v1']);
  });

  it('kills a worker silent past --timeout, and one still draining past the graceful timeout', () => {
    const { master, world } = makeMaster(2, 4);
    boot(master, world);
    world.clock += 4001;
    master.dispatch(heartbeat(101));
    master.dispatch(tick);
    expect(world.take()).toEqual(['KILL 100']);
    master.dispatch(exited(100, null as unknown as number));
    expect(world.take()).toEqual(['spawn 102 v1']);
    master.dispatch(signal('SIGTTOU'));
    expect(world.take()).toEqual(['QUIT 102']);
    // gracefulTimeout (30 s) + the kill grace (5 s)
    world.clock += 35_001;
    master.dispatch(heartbeat(101));
    master.dispatch(tick);
    expect(world.take()).toEqual(['KILL 102']);
  });

  it('TTOU never goes below one worker; QUIT drains and exits 0 once the last worker is gone', () => {
    const { master, world } = makeMaster(1);
    boot(master, world, 1);
    master.dispatch(signal('SIGTTOU'));
    expect(world.take()).toEqual([]);
    expect(master.status().desiredWorkers).toBe(1);
    master.dispatch(signal('SIGQUIT'));
    expect(world.take()).toEqual(['QUIT 100']);
    expect(world.exitCode).toBeUndefined();
    master.dispatch(exited(100, 0));
    expect(world.exitCode).toBe(0);
    expect(existsSync(root.path('prefork.pid'))).toBe(false);
  });

  it('USR2 that cannot start a new master changes nothing: pidfile and title stay', () => {
    const { master, world } = makeMaster(1);
    boot(master, world, 1);
    master.dispatch({ kind: 'signal', signal: 'SIGUSR2' });
    expect(master.status().state).toBe('running');
    expect(master.status().pidfile).toBe(root.path('prefork.pid'));
    expect(world.title).not.toMatch(/\(old\)/);
    expect(world.take()).toEqual([]);
  });
});

describe('master decisions for exec workers (no processes)', () => {
  const sleeper = { command: ['/bin/sleep', '600'] };
  const message = (pid: number, text: string): MasterEvent[] =>
    notifyMessages(text).map((m) => ({ kind: 'worker-message', pid, message: m }));

  it('READY=1 makes a worker ready; it drains with its stopSignal; USR1 is not passed on', () => {
    const { master, world } = makeMaster(1, 30, { ...sleeper, stopSignal: 'SIGINT' });
    master.dispatch(tick);
    expect(world.take()).toEqual(['spawn 100 x1']);
    for (const event of message(100, 'STATUS=warming up\nREADY=1\n')) master.dispatch(event);
    expect(master.status().state).toBe('running');
    expect(master.status().workers[0]).toMatchObject({ kind: 'exec', status: 'warming up' });
    master.dispatch(signal('SIGUSR1'));
    expect(world.take()).toEqual([]);
    master.dispatch(signal('SIGQUIT'));
    expect(world.take()).toEqual(['INT 100']);
  });

  it('ready: {afterMs}: ready once alive that long; a notify worker never ready is killed at bootTimeout', () => {
    const { master, world } = makeMaster(1, 30, { ...sleeper, ready: { afterMs: 1000 } });
    master.dispatch(tick);
    world.take();
    world.clock += 999;
    master.dispatch(tick);
    expect(master.status().state).toBe('booting');
    world.clock += 1;
    master.dispatch(tick);
    expect(master.status().state).toBe('running');

    const notify = makeMaster(1, 30, sleeper, { bootTimeout: 5 });
    notify.master.dispatch(tick);
    notify.world.take();
    notify.world.clock += 5001;
    notify.master.dispatch(tick);
    expect(notify.world.take()).toEqual(['KILL 100']);
  });

  it('watchdogSec: killed when WATCHDOG=1 stops; without it, silence is no reason (no heartbeat to miss)', () => {
    const { master, world } = makeMaster(1, 1, { ...sleeper, watchdogSec: 2 });
    master.dispatch(tick);
    for (const event of message(100, 'READY=1')) master.dispatch(event);
    world.take();
    for (let i = 0; i < 5; i += 1) {
      world.clock += 1500;
      for (const event of message(100, 'WATCHDOG=1')) master.dispatch(event);
      master.dispatch(tick);
    }
    expect(world.take()).toEqual([]);
    world.clock += 2001;
    master.dispatch(tick);
    expect(world.take()).toEqual(['KILL 100']);

    const quiet = makeMaster(1, 1, sleeper);
    quiet.master.dispatch(tick);
    for (const event of message(100, 'READY=1')) quiet.master.dispatch(event);
    quiet.world.take();
    quiet.world.clock += 60_000;
    quiet.master.dispatch(tick);
    expect(quiet.world.take()).toEqual([]);
  });

  it('RSS from /proc: a worker over maxMemory is replaced, the new one first', () => {
    const { master, world } = makeMaster(1, 30, sleeper, { maxMemory: 10 });
    master.dispatch(tick);
    for (const event of message(100, 'READY=1')) master.dispatch(event);
    world.take();
    world.rss.set(100, 11 * 1024 * 1024);
    world.clock += 1000;
    master.dispatch(tick);
    expect(master.status().workers[0]?.rss).toBe(11 * 1024 * 1024);
    expect(world.take()).toEqual(['spawn 101 x1']);
    for (const event of message(101, 'READY=1')) master.dispatch(event);
    expect(world.take()).toEqual(['TERM 100']);
  });
});
