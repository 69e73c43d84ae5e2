import { cpSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { freePort, must, type Rig, run } from './rig.js';

const REPO = fileURLToPath(new URL('../../..', import.meta.url));
const PREFORK = join(REPO, 'bin/prefork');

/** Step timings of one `deploy`/`rollback --json`, and its wall time. */
export interface StepTimes {
  steps: Record<string, number>;
  totalMs: number;
}

/** prefork in a temporary app root holding the bundled releases (v1 and v2). */
export class PreforkRig implements Rig {
  readonly name = 'prefork';
  readonly root = mkdtempSync(join(os.tmpdir(), 'prefork-bench-'));
  private port = 0;
  /** `replace()` step timings, newest last. */
  readonly history: StepTimes[] = [];

  constructor() {
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
    ]);
  }

  supervisorPid(): number {
    return Number(readFileSync(join(this.root, 'prefork.pid'), 'utf8'));
  }

  /** `deploy` (or `rollback`) with a 1 s verify window; its steps' timings from `--json`. */
  async step(command: 'deploy' | 'rollback', release?: string): Promise<StepTimes> {
    const started = performance.now();
    const out = await this.prefork([
      command,
      ...(release ? [release] : []),
      ...['--json', '--verify-window', '1'],
    ]);
    const steps: Record<string, number> = {};
    for (const line of out.trim().split('\n')) {
      const event = JSON.parse(line) as {
        event?: string;
        status?: string;
        step?: string;
        ms?: number;
      };
      if (event.event === 'step' && event.status === 'done' && event.step) {
        steps[event.step] = Number(event.ms);
      }
    }
    const times = { steps, totalMs: Math.round(performance.now() - started) };
    this.history.push(times);
    return times;
  }

  /** deploy → rollback → deploy, of whichever bundled release is not current. */
  async replace(): Promise<[number, number][]> {
    const current = readlinkSync(join(this.root, 'current'));
    const other = current.endsWith('v1') ? 'releases/v2' : 'releases/v1';
    const windows: [number, number][] = [];
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

  async stop(): Promise<void> {
    await run(process.execPath, [PREFORK, 'stop', '--quick', '--root', this.root]);
    rmSync(this.root, { recursive: true, force: true });
  }
}
