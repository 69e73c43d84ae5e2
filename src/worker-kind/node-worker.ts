import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as v from 'valibot';
import { sendSignal } from '../process/alive.js';
import { deliverHandlelessMessages } from '../process/handleless-messages.js';
import { ENV_WORKER_OPTIONS } from '../protocol/env.js';
import { type MasterMessage, WorkerMessageSchema, type WorkerOptions } from '../protocol/ipc.js';
import { describeIssues } from '../protocol/issues.js';
import type { WorkerActions, WorkerKind } from './worker-kind.js';
import { newWorkerRecord, type SpawnWorkerOptions, type WorkerRecord } from './worker-record.js';

/** The worker entry script, next to this folder in `dist/`. */
export const WORKER_SCRIPT = fileURLToPath(new URL('../worker/main.js', import.meta.url));

/**
 * Spawns a Node worker: `node dist/worker/main.js` in the release directory, no shell, the
 * listen sockets at fd 3, 4, ..., an IPC channel after them, stdout/stderr shared with the
 * master.
 */
function spawnNodeWorker(options: SpawnWorkerOptions): WorkerRecord {
  const { release } = options;
  if (release.kind !== 'node') throw new Error(`${release.name} is not a Node release`);
  const payload: WorkerOptions = {
    ...options.worker,
    releaseDir: release.dir,
    entry: release.entry,
    release: release.name,
  };
  const child = spawn(options.nodePath, [WORKER_SCRIPT], {
    cwd: release.dir,
    env: { ...options.env, [ENV_WORKER_OPTIONS]: JSON.stringify(payload) },
    stdio: ['ignore', 'inherit', 'inherit', ...options.fds, 'ipc'],
    serialization: 'json',
    ...(options.identity ?? {}),
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn a worker process');
  // A connection whose fd this master could not receive (out of fds) still comes: refused.
  deliverHandlelessMessages(child);
  // The app shares the channel (its own `process.send`): only prefork's messages count.
  child.on('message', (raw, handle) => {
    const message = v.safeParse(WorkerMessageSchema, raw);
    if (!message.success) options.onStrayMessage(pid, describeIssues(message.issues));
    else if (message.output.type === 'conn' || message.output.type === 'conn-answer') {
      // A connection moving (docs/connection-moves.md): at once, its fd with it.
      options.onMove?.(pid, message.output, handle);
    } else options.onMessage(pid, message.output);
  });
  child.on('exit', (code, signal) => options.onExit(pid, code, signal));
  // A send to a worker that just died fails asynchronously; its exit is handled above.
  child.on('error', () => {});
  return newWorkerRecord(pid, child, options, Date.now());
}

/** Sends a Node worker a message on its IPC channel, ignoring one that is gone or closing. */
export function sendOnChannel(worker: WorkerRecord, message: MasterMessage): void {
  try {
    worker.process?.send(message, () => {});
  } catch {
    // its channel closed: it is exiting, and its exit event is on its way
  }
}

/** Sends `signal` to a worker, ignoring one that is already gone (its exit is on its way). */
export function signalWorker(worker: WorkerRecord, signal: NodeJS.Signals): void {
  sendSignal(worker.pid, signal);
}

/**
 * A Node worker: the release's app loaded in-process by `dist/worker/main.js`, which heartbeats,
 * reports readiness and request figures on its IPC channel, answers health checks, and drains
 * on QUIT.
 */
export const nodeWorker: WorkerKind = {
  name: 'node',
  spawn: spawnNodeWorker,
  stopSignal: () => 'SIGQUIT',
  silenceLimit: (_worker, heartbeatTimeoutS) => ({
    s: heartbeatTimeoutS,
    why: `no heartbeat for ${heartbeatTimeoutS} s (blocked event loop?)`,
  }),
  notReadyReason: (_worker, within) => `did not become ready ${within}`,
  lastWords: () => '',
  reopenLogs: (worker: WorkerRecord, actions: WorkerActions) =>
    actions.signalWorker(worker, 'SIGUSR1'),
  tell: (worker, message, actions) => {
    actions.sendWorker(worker, message);
    return true;
  },
  answersHealthChecks: true,
  onTick: () => ({}),
};
