import type { WorkerMessage } from '../protocol/ipc.js';
import type { SpawnWorkerOptions } from '../worker-kind/worker-record.js';
import type { Generation } from './generations.js';
import type { MasterParts } from './master-parts.js';
import { kindOf } from './worker-kinds.js';

/** Where a spawned worker's messages, exit and output go (the master's queue and log). */
export interface SpawnHooks {
  onMessage: (pid: number, message: WorkerMessage) => void;
  onMove: SpawnWorkerOptions['onMove'];
  onExit: (pid: number, code: number | null, signal: NodeJS.Signals | null) => void;
  onOutput: (pid: number, stream: 'stdout' | 'stderr', line: string) => void;
  /** A message on a worker's IPC channel that is none of prefork's (`WorkerMessageSchema`). */
  onStrayMessage: (pid: number, problem: string) => void;
}

/**
 * What a worker of `generation` is spawned with: its kind, the listen sockets at fd 3, 4, ...,
 * and the settings it is told (`WorkerOptions`), with `maxRequests` jittered per worker.
 */
export function workerSpawnOptions(
  generation: Generation,
  parts: Pick<
    MasterParts,
    'sockets' | 'metrics' | 'identity' | 'notifyDir' | 'workerEnv' | 'command'
  >,
  canary: boolean,
  hooks: SpawnHooks,
): SpawnWorkerOptions {
  const { config, release } = generation;
  const jitter = config.maxRequestsJitter;
  const { sockets } = parts;
  return {
    kind: kindOf(release),
    release,
    generation: generation.number,
    fds: sockets.map((s) => s.fd),
    env: parts.workerEnv,
    identity: parts.identity,
    nodePath: parts.command.execPath,
    worker: {
      sockets: sockets.map((s) => s.bind.name),
      gracefulTimeoutMs: config.gracefulTimeout * 1000,
      goodbyeWindowMs: config.goodbyeWindow * 1000,
      keepAliveMinTimeoutMs: config.keepAliveMinTimeout * 1000,
      heartbeatMs: Math.max(50, Math.min(1000, (config.timeout * 1000) / 4)),
      maxRequests:
        config.maxRequests > 0 ? config.maxRequests + Math.floor(Math.random() * (jitter + 1)) : 0,
      warmup: config.warmup,
      warmupPath: config.warmupPath ?? config.healthPath ?? '/',
      warmupTimeoutMs: (config.bootTimeout * 1000) / 2,
      logLevel: config.logLevel,
      logFile: config.logFile,
      metrics: parts.metrics !== undefined,
      canary,
      moveConnections: config.moveConnections,
    },
    notifyDir: parts.notifyDir,
    ...hooks,
  };
}
