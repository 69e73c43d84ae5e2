/**
 * What every server under test offers the bench: prefork, Node's cluster module and PM2 each
 * serve the same bundled release with the same number of workers, each in its own session
 * (with Linux's autogroup scheduling, a session is a CPU-sharing group, so none of them shares
 * one with the load generator).
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { poll, sleep } from '../../../src/wait/wait.js';

/** A server under test. */
export interface Rig {
  /** How the report names it. */
  readonly name: string;
  /** Where the load goes. */
  readonly url: string;
  /** Starts `workers` workers and resolves once they answer. */
  start(workers: number): Promise<void>;
  /**
   * Replaces every worker twice or more, the way this tool's users ship a release; resolves
   * with the `performance.now()` window of each replacement.
   */
  replace(): Promise<[number, number][]>;
  /** Replaces every worker once (a deploy, a reload); resolves with its `performance.now()` window. */
  replaceOnce(): Promise<[number, number]>;
  /** The long-lived supervisor process: prefork master, cluster primary, PM2 daemon. */
  supervisorPid(): number;
  /** Stops everything it started and removes its files. */
  stop(): Promise<void>;
}

/** Runs a command to its end, collecting its output. */
export function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.on('error', reject);
    // 'close', not 'exit': the output may still be in flight when the process exits.
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Like {@link run}, but a non-zero exit is an error naming the command and its stderr. */
export async function must(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const result = await run(command, args, env);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  }
  return result.stdout;
}

/** The median of `values` (the upper one of an even count); 0 for none. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

export { sleep } from '../../../src/wait/wait.js';

/** Resolves once `url` answers 200, failing after `timeoutMs`. */
export async function waitForHttp(url: string, timeoutMs = 30_000): Promise<void> {
  await poll(
    async () => {
      try {
        const response = await fetch(url);
        await response.arrayBuffer();
        return response.status === 200 ? true : undefined;
      } catch {
        return undefined; // not listening yet
      }
    },
    timeoutMs,
    () => new Error(`${url} did not answer within ${timeoutMs} ms`),
    { everyMs: 100 },
  );
}

/** A process's RSS and private (anonymous) memory in MB, and its CPU time in ms. */
export function footprint(pid: number): { rssMb: number; anonMb: number; cpuMs: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  // Fields after the command name, which may hold spaces and ends with ')'.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(fields[11]) + Number(fields[12]);
  return {
    rssMb: Math.round(kb('VmRSS') / 102.4) / 10,
    anonMb: Math.round(kb('RssAnon') / 102.4) / 10,
    cpuMs: ticks * 10,
  };
}

export { freePort } from '../../helpers/ports.js';

/** CPU time (ms) the children of `pid` (a master's workers) have used so far. */
export function childrenCpuMs(pid: number): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // Fields after the command name (which may hold spaces): ppid is the 2nd, utime the 12th.
      const fields = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      if (Number(fields[1]) === pid) ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks * (1000 / 100);
}

/**
 * GETs `url` every `everyMs` (start to start; a slow answer delays the next) until stopped, as
 * a scraper or an open page does; `stop()` resolves with the requests that failed.
 */
export function getEvery(url: string, everyMs: number): { stop(): Promise<number> } {
  let stopped = false;
  let failed = 0;
  const loop = (async () => {
    while (!stopped) {
      const started = Date.now();
      try {
        const response = await fetch(url);
        await response.text();
        if (response.status !== 200) failed += 1;
      } catch {
        failed += 1;
      }
      await sleep(Math.max(0, everyMs - (Date.now() - started)));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return failed;
    },
  };
}
