import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { processTitle } from '../../src/process/alive.js';
import { poll } from '../../src/wait/wait.js';
import { PREFORK_BIN } from './app-root.js';

/** Every pid a test started or saw (masters, workers), killed by pid in `killAll`. */
const started = new Set<number>();

/** Remembers a pid to kill at the end of the test file. */
export function track(pid: number | undefined): void {
  if (pid !== undefined) started.add(pid);
}

/** Direct children of `pid`, from /proc. */
export function childrenOf(pid: number): number[] {
  try {
    const out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
    return out
      .split('\n')
      .map((s) => s.trim())
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** True when `pid` runs (and is not a zombie). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/** The command line of `pid` as `ps` shows it (process titles included). */
export const cmdline = processTitle;

/** SIGKILLs every tracked pid and their descendants. */
export function killAll(): void {
  const all = new Set<number>();
  const visit = (pid: number) => {
    if (all.has(pid)) return;
    all.add(pid);
    for (const child of childrenOf(pid)) visit(child);
  };
  for (const pid of started) visit(pid);
  for (const pid of all) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  started.clear();
}

/** Polls `check` every 25 ms until it returns a truthy value, or fails after `timeoutMs`. */
export function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  return poll(
    async () => (await check()) || undefined,
    timeoutMs,
    () => new Error(`timed out after ${timeoutMs} ms waiting for ${what}`),
  );
}

/** One parsed pino line. */
export type LogLine = Record<string, unknown> & { msg: string; pid?: number };

/** A `prefork` command run as a user would, with its output collected. */
export class PreforkProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    args: string[],
    options: {
      cwd?: string;
      env?: NodeJS.ProcessEnv;
      bin?: string;
      detached?: boolean;
      /** A command that runs prefork (`unshare ...`, `nsenter ...`, as a container runtime does). */
      wrapper?: string[];
      /** The wrapper starts prefork itself (`crun run` of a bundle): `args` go to it as they are. */
      wrapperStartsPrefork?: boolean;
    } = {},
  ) {
    const prefork = options.wrapperStartsPrefork
      ? []
      : [process.execPath, options.bin ?? PREFORK_BIN];
    const [command, ...wrapperArgs] = [...(options.wrapper ?? []), ...prefork, ...args] as [
      string,
      ...string[],
    ];
    this.child = spawn(command, wrapperArgs, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // A process group of its own, for a test that kills it with everything it started.
      detached: options.detached ?? false,
    });
    track(this.child.pid);
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
    });
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => resolve({ code, signal })),
    );
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** The JSON log lines printed so far. */
  logs(): LogLine[] {
    return this.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as LogLine);
  }

  /** Waits for a log line whose message matches. */
  waitForLog(pattern: RegExp, timeoutMs = 20_000): Promise<LogLine> {
    return waitFor(
      `a log line matching ${pattern} (stdout so far:\n${this.stdout.slice(-2000)}\nstderr:\n${this.stderr.slice(-1000)})`,
      () => this.logs().find((line) => pattern.test(line.msg)),
      timeoutMs,
    );
  }

  /** Counts log lines whose message matches. */
  countLogs(pattern: RegExp): number {
    return this.logs().filter((line) => pattern.test(line.msg)).length;
  }
}

/** Runs a prefork command to completion. */
export async function runPrefork(
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; bin?: string; wrapper?: string[] } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = new PreforkProcess(args, options);
  const { code } = await run.exited;
  return { code, stdout: run.stdout, stderr: run.stderr };
}

/** Runs `prefork start` in `root` on a free loopback port (`--bind 127.0.0.1:0`), to completion. */
export function runStart(
  root: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runPrefork(['start', '--root', root, '--bind', '127.0.0.1:0', ...args], options);
}

/**
 * The pid in a pidfile, if there is one. A pidfile may go between two looks (an upgrade
 * renames `prefork.pid` to `.oldbin` before the new master writes its own), so a missing file
 * is read as no pid, never as an error.
 */
export function readPid(path: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8').trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return /^\d+$/.test(text) ? Number(text) : undefined;
}

/**
 * A live process that is not a prefork master, to put in a pidfile: it reports every signal
 * prefork could send it, so a test can prove none was.
 */
export function startBystander(): { pid: number; signalsSeen: () => string } {
  const signals = [
    'SIGHUP',
    'SIGQUIT',
    'SIGTERM',
    'SIGINT',
    'SIGUSR1',
    'SIGUSR2',
    'SIGWINCH',
    'SIGTTIN',
    'SIGTTOU',
  ];
  const child = spawn(
    process.execPath,
    [
      '-e',
      `for (const s of ${JSON.stringify(signals)}) process.on(s, () => console.log(s)); setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  track(child.pid);
  let out = '';
  child.stdout?.on('data', (chunk) => {
    out += chunk;
  });
  return { pid: child.pid as number, signalsSeen: () => out };
}

/** Live prefork masters whose working directory is `dir` (the app root a test started them in). */
export function mastersIn(dir: string): number[] {
  const cwdOf = (pid: number) => {
    try {
      return readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      return undefined;
    }
  };
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((p) => alive(p) && cmdline(p).startsWith('prefork: master') && cwdOf(p) === dir);
}

/** The session id of a process (`/proc/<pid>/stat`, field 6). */
export function sessionOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return Number(fields[3]);
}
