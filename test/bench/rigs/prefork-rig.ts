import { cpSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { processTitle } from '../../../src/process/alive.js';
import { REPO } from '../../helpers/repo.js';
import { freePort, must, type Rig, run } from './rig.js';

const PREFORK = join(REPO, 'bin/prefork');

/** Step timings of one `deploy`/`rollback --json`, its wall time, and how it ended. */
export interface StepTimes {
  steps: Record<string, number>;
  totalMs: number;
  /** What the old master's drains did with their connections (moved, closed, ...), if it said. */
  drained?: Record<string, number>;
  /** Undefined when it succeeded; otherwise its exit code and message (a result, not a crash). */
  failed?: string | undefined;
}

/** How long after WINCH the bench calls "the switch" to the new workers. */
export const SWITCH_MS = 500;

/**
 * Where in a replacement a response arrived (`performance.now()` windows): `boot`, from USR2
 * until the new master is ready (its workers boot next to the serving ones); `switch`, the
 * first {@link SWITCH_MS} ms after WINCH (the new workers take every connection); `rest`,
 * anything else the command spent (preflight, health checks, the verify window, QUIT).
 */
export interface Phases {
  boot: [number, number][];
  switch: [number, number][];
  rest: [number, number][];
}

/** prefork in a temporary app root holding the bundled releases (v1 and v2). */
export class PreforkRig implements Rig {
  /** Every deploy or rollback of any rig that failed, for the report. */
  static readonly failures: string[] = [];
  readonly name: string;
  readonly root = mkdtempSync(join(os.tmpdir(), 'prefork-bench-'));
  private port = 0;
  /** `replace()` step timings, newest last. */
  readonly history: StepTimes[] = [];
  /** The phases of the last `replace()`. */
  phases: Phases = { boot: [], switch: [], rest: [] };

  /**
   * `warmup`: requests each new worker sends itself (`--warmup`, on `/health`); 0 = none.
   * `extra`: more `start` options (`--metrics-bind ...`), named in the report.
   */
  constructor(
    readonly warmup = 0,
    private readonly extra: string[] = [],
  ) {
    const options = [...(warmup > 0 ? [`--warmup ${warmup}`] : []), ...extra];
    this.name = ['prefork', ...options].join(' ');
    cpSync(join(REPO, 'releases'), join(this.root, 'releases'), { recursive: true });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  private prefork(args: string[]): Promise<string> {
    return must(process.execPath, [PREFORK, ...args, '--root', this.root]);
  }

  /** Starts the master (daemonized: `start` returns once every worker is ready). */
  async start(workers: number): Promise<void> {
    this.port = await freePort();
    const log = join(this.root, 'prefork.log');
    await this.prefork([
      ...['start', 'releases/v1', '--bind', `127.0.0.1:${this.port}`, '-w', String(workers)],
      ...['--daemon', '--log-file', log],
      ...(this.warmup > 0 ? ['--warmup', String(this.warmup), '--warmup-path', '/health'] : []),
      ...this.extra,
    ]);
  }

  supervisorPid(): number {
    return Number(readFileSync(join(this.root, 'prefork.pid'), 'utf8'));
  }

  /**
   * `deploy` (or `rollback`) with a 1 s verify window, and `options` (`--canary`, ...); its
   * steps' timings from `--json`.
   */
  async step(
    command: 'deploy' | 'rollback',
    release?: string,
    options: string[] = [],
  ): Promise<StepTimes> {
    const started = performance.now();
    const result = await run(process.execPath, [
      PREFORK,
      command,
      ...(release ? [release] : []),
      ...['--json', '--verify-window', '1', '--root', this.root, ...options],
    ]);
    const ended = performance.now();
    const out = result.stdout;
    const steps: Record<string, number> = {};
    /** Each step's start and end on the `performance.now()` clock. */
    const at: Record<string, number> = {};
    let drained: Record<string, number> | undefined;
    for (const line of out.trim().split('\n')) {
      if (!line.startsWith('{')) continue;
      const event = JSON.parse(line) as {
        event?: string;
        status?: string;
        step?: string;
        ms?: number;
        time?: number;
        drained?: Record<string, number>;
      };
      if (event.drained !== undefined) drained = { ...drained, ...event.drained };
      if (event.event !== 'step' || !event.step) continue;
      at[`${event.step} ${event.status}`] = Number(event.time) - performance.timeOrigin;
      if (event.status === 'done') steps[event.step] = Number(event.ms);
    }
    const boot: [number, number] = [at['usr2 start'] ?? 0, at['wait-ready done'] ?? 0];
    const winch = at['winch start'] ?? ended;
    const flip: [number, number] = [winch, Math.min(ended, winch + SWITCH_MS)];
    this.phases.boot.push(boot);
    this.phases.switch.push(flip);
    this.phases.rest.push([started, boot[0]], [boot[1], flip[0]], [flip[1], ended]);
    const failed =
      result.code === 0
        ? undefined
        : `exit ${result.code}: ${result.stderr.trim().split('\n').at(-1)}`;
    const times = { steps, totalMs: Math.round(ended - started), drained, failed };
    if (failed !== undefined) {
      PreforkRig.failures.push(`${this.name}: ${command} ${release ?? ''} ${failed}`);
    }
    this.history.push(times);
    return times;
  }

  /** deploy → rollback → deploy, of whichever bundled release is not current. */
  async replace(): Promise<[number, number][]> {
    const current = readlinkSync(join(this.root, 'current'));
    const other = current.endsWith('v1') ? 'releases/v2' : 'releases/v1';
    const windows: [number, number][] = [];
    this.phases = { boot: [], switch: [], rest: [] };
    for (const [command, release] of [
      ['deploy', other],
      ['rollback', undefined],
      ['deploy', other],
    ] as const) {
      const from = performance.now();
      await this.step(command, release);
      windows.push([from, performance.now()]);
    }
    return windows;
  }

  /** A deploy of whichever bundled release is not current, with `options`. */
  async replaceOnce(options: string[] = []): Promise<[number, number]> {
    const current = readlinkSync(join(this.root, 'current'));
    const other = current.endsWith('v1') ? 'releases/v2' : 'releases/v1';
    const from = performance.now();
    await this.step('deploy', other, options);
    return [from, performance.now()];
  }

  /**
   * Stops everything this rig started, whatever state a failed step left: `prefork stop
   * --quick`, then SIGKILL for any master of its pidfiles and any process still running in its
   * app root (workers run in their release directory).
   */
  async stop(): Promise<void> {
    const masters = ['prefork.pid', 'prefork.pid.oldbin'].flatMap((file) => {
      try {
        return [Number(readFileSync(join(this.root, file), 'utf8').trim())];
      } catch {
        return [];
      }
    });
    await run(process.execPath, [PREFORK, 'stop', '--quick', '--root', this.root]);
    const leftMasters = masters.filter((pid) => processTitle(pid).startsWith('prefork: master'));
    for (const pid of [...leftMasters, ...processesIn(this.root)]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** Pids of the processes whose working directory is `dir` or inside it. */
function processesIn(dir: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const cwd = readlinkSync(`/proc/${entry}/cwd`);
        return cwd === dir || cwd.startsWith(`${dir}/`);
      } catch {
        return false;
      }
    })
    .map(Number);
}
