import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { SpawnWorkerOptions, WorkerRecord } from '../master/worker-process.js';
import { newWorkerRecord } from '../master/worker-process.js';
import {
  ENV_LISTEN_FDNAMES,
  ENV_LISTEN_FDS,
  ENV_NOTIFY_SOCKET,
  ENV_WATCHDOG_USEC,
  notifySocketName,
} from '../protocol/index.js';
import type { ExecRelease } from '../release/read-release.js';
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
export function spawnExecWorker(release: ExecRelease, options: SpawnWorkerOptions): WorkerRecord {
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
