import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  ENV_LISTEN_FDNAMES,
  ENV_LISTEN_FDS,
  ENV_NOTIFY_SOCKET,
  ENV_WATCHDOG_USEC,
} from '../protocol/env.js';
import { notifySocketName } from '../protocol/files.js';
import type { ExecRelease } from '../release/read-release.js';
import type { WorkerKind } from '../worker-kind/worker-kind.js';
import {
  newWorkerRecord,
  type SpawnWorkerOptions,
  type WorkerRecord,
} from '../worker-kind/worker-record.js';
import { ensureListening } from './listening.js';
import { notifyMessages } from './notify-message.js';
import { NotifySocket } from './notify-socket.js';

/**
 * The one shell prefork runs (SPEC §11): it sets `LISTEN_PID` (and `WATCHDOG_PID`) to its own
 * pid, which `exec` hands to the program, so libraries that check `LISTEN_PID == getpid()`
 * accept the sockets. The release's argv follows as positional arguments, never inside this
 * string.
 */
const TRAMPOLINE = 'export LISTEN_PID=$$ WATCHDOG_PID=$$; exec "$@"';

let nextSeq = 1;

/** How long an exited worker's remaining output may take to arrive before its exit is handled. */
const OUTPUT_DRAIN_MS = 200;

/**
 * The name of each listen socket in `LISTEN_FDNAMES`: its bind, with `:` (which separates the
 * names, and which systemd forbids in one) as `_`: `127.0.0.1_8000`, `unix_/run/app.sock`.
 */
export function fdName(bind: string): string {
  return bind.replace(/:/g, '_');
}

/**
 * Spawns an exec worker: the release's command through the trampoline, cwd the release
 * directory, the listen sockets at fd 3, 4, ... with the systemd variables, its own
 * `NOTIFY_SOCKET`, and stdout/stderr piped to the master, which logs each line.
 */
function spawnExecWorker(options: SpawnWorkerOptions): WorkerRecord {
  const release = options.release as ExecRelease;
  if (release.kind !== 'exec') throw new Error(`${release.name} is not an exec release`);
  const { exec } = release;
  ensureListening(options.fds);
  const notifyPath = join(options.notifyDir.path(), notifySocketName(process.pid, nextSeq++));
  // Datagrams arrive on the event loop, after this function has set `pid` and returned.
  let pid = 0;
  const notify = NotifySocket.open(
    notifyPath,
    (text) => {
      for (const message of notifyMessages(text)) options.onMessage(pid, message);
    },
    options.identity,
  );
  const env: NodeJS.ProcessEnv = {
    ...options.env,
    ...exec.env,
    [ENV_LISTEN_FDS]: String(options.fds.length),
    [ENV_LISTEN_FDNAMES]: options.worker.sockets.map(fdName).join(':'),
    [ENV_NOTIFY_SOCKET]: notifyPath,
  };
  if (exec.watchdogSec > 0) env[ENV_WATCHDOG_USEC] = String(Math.round(exec.watchdogSec * 1e6));
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn('/bin/sh', ['-c', TRAMPOLINE, 'prefork', ...exec.command], {
      cwd: release.dir,
      env,
      stdio: ['ignore', 'pipe', 'pipe', ...options.fds],
      ...(options.identity ?? {}),
    });
  } catch (error) {
    notify.close();
    throw error;
  }
  if (child.pid === undefined) {
    notify.close();
    throw new Error('could not spawn a worker process');
  }
  const workerPid = child.pid;
  pid = workerPid;
  const record = newWorkerRecord(workerPid, undefined, options, Date.now());
  for (const [stream, readable] of [
    ['stdout', child.stdout],
    ['stderr', child.stderr],
  ] as const) {
    if (readable === null) continue;
    createInterface({ input: readable, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
      record.lastOutput = line;
      options.onOutput(workerPid, stream, line);
    });
  }
  // Report the exit once its last lines are read (they often say why it died), or shortly
  // after if a child of the worker holds its stdout open.
  let reported = false;
  child.on('exit', (code, signal) => {
    const report = () => {
      if (reported) return;
      reported = true;
      clearTimeout(timer);
      notify.close();
      options.onExit(workerPid, code, signal);
    };
    const timer = setTimeout(report, OUTPUT_DRAIN_MS);
    child.once('close', report);
  });
  child.on('error', () => {});
  return record;
}

/** How often the master reads an exec worker's RSS from `/proc`. */
const RSS_EVERY_MS = 1000;

/** The exec settings of a worker's release (an exec worker's release is an exec release). */
function execOf(worker: WorkerRecord): ExecRelease['exec'] {
  return (worker.release as ExecRelease).exec;
}

/**
 * An exec release's program (docs/exec-releases.md): sockets by fd with systemd's variables,
 * readiness and watchdog by `sd_notify` (or by time), its output logged line by line by the
 * master. It has no channel: it is not told anything, and its RSS is read from `/proc`.
 */
export const execWorker: WorkerKind = {
  name: 'exec',
  spawn: spawnExecWorker,
  stopSignal: (worker) => execOf(worker).stopSignal,
  silenceLimit: (worker) => {
    const { watchdogSec } = execOf(worker);
    if (watchdogSec <= 0) return undefined;
    return { s: watchdogSec, why: `no WATCHDOG=1 for ${watchdogSec} s (watchdogSec): hung?` };
  },
  notReadyReason: (worker, within) =>
    execOf(worker).ready.kind === 'notify'
      ? `never sent READY=1 on NOTIFY_SOCKET ${within}: make it notify (sd_notify), or set "ready": {"afterMs": N} in prefork.json`
      : `did not become ready ${within}`,
  lastWords: (worker) =>
    worker.lastOutput ? ` (it said: ${worker.lastOutput.slice(0, 300)})` : '',
  // Its output reaches the log through the master, which reopens it itself; USR1 would kill
  // most programs.
  reopenLogs: () => {},
  tell: () => false,
  answersHealthChecks: false,
  /** Readiness by time (`ready: {afterMs}`), and its RSS from `/proc` about once a second. */
  onTick: (worker, now, actions) => {
    const { ready } = execOf(worker);
    const news: { ready?: boolean; rssRead?: boolean } = {};
    if (worker.state === 'booting' && ready.kind === 'after' && now - worker.bornAt >= ready.ms) {
      news.ready = true;
    }
    if (now - worker.rssAt >= RSS_EVERY_MS) {
      worker.rssAt = now;
      worker.rss = actions.processRss(worker.pid);
      news.rssRead = true;
    }
    return news;
  },
};
