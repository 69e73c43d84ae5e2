import { existsSync, lstatSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { UsageError } from '../errors/index.js';
import { isAlive, processState, processTitle } from '../process/alive.js';
import {
  type ControlReply,
  type ControlRequest,
  controlSocketName,
  type MasterStatus,
} from '../protocol/index.js';
import { readPidfile } from '../state/pidfile.js';
import { stateDirPath } from '../state/state-dir.js';

/** Path of the control socket of the master with `pid` in `root`. */
export function controlSocketPath(root: string, pid: number): string {
  return join(stateDirPath(root), controlSocketName(pid));
}

/** Sends one request to a control socket and returns the result, or throws its error. */
export function controlRequest<T>(
  socketPath: string,
  request: ControlRequest,
  timeoutMs = 5000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    let text = '';
    socket.setEncoding('utf8');
    socket.setTimeout(timeoutMs, () => {
      socket.destroy();
      reject(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`));
    });
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => {
      text += chunk;
    });
    socket.on('error', reject);
    socket.on('end', () => {
      try {
        const reply = JSON.parse(text) as ControlReply<T>;
        if (reply.ok) resolve(reply.result);
        else reject(new Error(reply.error));
      } catch {
        reject(new Error(`malformed answer from ${socketPath}`));
      }
    });
  });
}

/**
 * The status of the master with `pid`, if it is a live prefork master of `root` (it answers on
 * its control socket with the same pid and root); undefined otherwise. Never signals anything.
 */
export async function queryMaster(root: string, pid: number): Promise<MasterStatus | undefined> {
  try {
    const status = await controlRequest<MasterStatus>(controlSocketPath(root, pid), {
      cmd: 'status',
    });
    return status.pid === pid && status.root === root ? status : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The master a pidfile names, verified to be a prefork master of `root` before anyone
 * signals it. Throws a {@link UsageError} saying why not, otherwise.
 */
export async function findMaster(root: string, pidfile: string): Promise<MasterStatus> {
  const owner = ownerOf(pidfile);
  if (owner !== undefined && typeof process.getuid === 'function' && owner !== process.getuid()) {
    throw new UsageError(`${pidfile} belongs to uid ${owner}, not to you: nothing was signalled`);
  }
  const pid = readPidfile(pidfile);
  if (pid === undefined) {
    throw new UsageError(
      `no master is running: ${pidfile} is missing or holds no pid (start one with "prefork start")`,
    );
  }
  const status = await queryMaster(root, pid);
  if (status === undefined) {
    const { why, fix } = diagnoseNoAnswer(root, pid, pidfile);
    throw new UsageError(`${why}: nothing was signalled; ${fix}`);
  }
  return status;
}

/**
 * Why the pid `pidfile` names did not answer as a prefork master of `root`, and what a person
 * should do. A live process titled as a prefork master whose control socket exists in `root`
 * is a master of this root that is stopped or hung, not a stale pidfile: its pidfile must stay.
 */
export function diagnoseNoAnswer(
  root: string,
  pid: number,
  pidfile: string,
): { why: string; fix: string } {
  const which = `pid ${pid} in ${pidfile}`;
  const stale = 'remove the pidfile or start a master';
  if (!isAlive(pid)) return { why: `${which} is not running (stale pidfile)`, fix: stale };
  const title = processTitle(pid);
  if (!title.startsWith('prefork: master') || !existsSync(controlSocketPath(root, pid))) {
    return { why: `${which} is not a prefork master of ${root} (stale pidfile?)`, fix: stale };
  }
  const state =
    processState(pid) === 'T'
      ? 'is stopped (state T: SIGSTOP or a debugger)'
      : 'did not answer on its control socket';
  return {
    why: `${which} is a prefork master of ${root} ("${title}") that ${state}`,
    fix: `do not remove the pidfile: that master still owns the listen sockets. Check it with "ps -o pid,stat,cmd -p ${pid}": state T means stopped, resume it with "kill -CONT ${pid}"; otherwise it is hung: look at its log, and stop it with "kill -TERM ${pid}" before starting another`,
  };
}

/** The uid owning `path` (not following a symlink), if it exists. */
function ownerOf(path: string): number | undefined {
  try {
    return lstatSync(path).uid;
  } catch {
    return undefined;
  }
}
