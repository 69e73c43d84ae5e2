import { type ChildProcess, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import {
  ENV_CANARY_WORKERS,
  ENV_OLD_MASTER_PID,
  ENV_PROTOCOL,
  ENV_READY_FD,
  FIRST_LISTEN_FD,
} from '../protocol/env.js';
import type { ReadyMessage } from '../protocol/handover.js';
import { HANDOVER_PROTOCOL } from '../protocol/versions.js';
import { handedSocketsEnv } from './handed-sockets.js';
import type { ListenSocket } from './listen-sockets.js';
import { readReadyMessage } from './ready-pipe.js';

/** How a master was started, kept so that USR2 can start the next one the same way. */
export interface MasterCommand {
  /** The Node executable. */
  execPath: string;
  /** Node flags, the prefork script and its arguments (a `start` release argument removed). */
  args: string[];
  /** The working directory the master was started in (not `current` resolved). */
  cwd: string;
  /** The environment it was started with, less prefork's own variables. */
  env: NodeJS.ProcessEnv;
}

/** A spawned master and the answer it will give on its ready pipe. */
export interface SpawnedMaster {
  process: ChildProcess;
  ready: Promise<ReadyMessage | undefined>;
}

/**
 * Starts a master from `command` (in a session of its own with `newSession`), with `sockets` at
 * fd 3, 4, ... (`PREFORK_SOCKETS`, `handed-sockets.ts`) and a ready pipe after them
 * (`PREFORK_READY_FD`). No shell is involved.
 */
export function spawnMaster(
  command: MasterCommand,
  options: {
    sockets: ListenSocket[];
    /** Set when an old master starts its new master (USR2); absent for `start --daemon`. */
    oldMasterPid?: number | undefined;
    /** A canary deploy's first step: the new master's worker count ({@link ENV_CANARY_WORKERS}). */
    canaryWorkers?: number | undefined;
    stdout: 'inherit' | 'ignore' | number;
    stderr: 'inherit' | 'ignore' | number;
    /**
     * `setsid()`: away from a terminal's signals (`start --daemon`; USR2 of a master in the
     * foreground of a terminal, where resizing the window sends WINCH to its process group).
     * Otherwise the new master stays in its old master's session: with Linux's autogroup
     * scheduling a session is a CPU-sharing group, and a new session would get as much CPU as
     * all the old master's workers together while both serve (docs/architecture.md).
     */
    newSession: boolean;
  },
): SpawnedMaster {
  const fds = options.sockets.map((s) => s.fd);
  const readyFd = FIRST_LISTEN_FD + fds.length;
  const env: NodeJS.ProcessEnv = {
    ...command.env,
    [ENV_PROTOCOL]: String(HANDOVER_PROTOCOL),
    [ENV_READY_FD]: String(readyFd),
    ...handedSocketsEnv(options.sockets),
  };
  if (options.oldMasterPid !== undefined) env[ENV_OLD_MASTER_PID] = String(options.oldMasterPid);
  if (options.canaryWorkers !== undefined) env[ENV_CANARY_WORKERS] = String(options.canaryWorkers);
  const child = spawn(command.execPath, command.args, {
    cwd: command.cwd,
    env,
    detached: options.newSession,
    // USR2: an IPC channel after the ready pipe, on which the two masters move connections
    // (docs/connection-moves.md); Node gives the child its fd in NODE_CHANNEL_FD.
    stdio: [
      'ignore',
      options.stdout,
      options.stderr,
      ...fds,
      'pipe',
      ...(options.oldMasterPid === undefined ? [] : ['ipc' as const]),
    ],
    serialization: 'json',
  });
  child.on('error', () => {});
  const pipe = child.stdio[readyFd] as Readable | null | undefined;
  const ready = pipe ? readReadyMessage(pipe) : Promise.resolve(undefined);
  return { process: child, ready };
}
