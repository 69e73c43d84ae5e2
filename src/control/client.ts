import { existsSync, lstatSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import * as v from 'valibot';
import { UsageError } from '../errors/index.js';
import { isAlive, processState, processTitle } from '../process/alive.js';
import { controlSocketName } from '../protocol/files.js';
import { PREFORK_VERSION } from '../protocol/version.js';
import { CONTROL_PROTOCOL } from '../protocol/versions.js';
import { readPidfile } from '../state/pidfile.js';
import { stateDirPath } from '../state/state-dir.js';
import {
  ControlReplySchema,
  type ControlRequest,
  type ControlResult,
  ControlResultSchemas,
  describeIssues,
  type MasterStatus,
} from './schema.js';

/** Path of the control socket of the master with `pid` in `root`. */
export function controlSocketPath(root: string, pid: number): string {
  return join(stateDirPath(root), controlSocketName(pid));
}

/**
 * A master answered with a reply this prefork does not read: an older or newer prefork, or
 * not prefork at all. Says which master, which request, and what was wrong, never a crash.
 */
export class ControlProtocolError extends UsageError {
  constructor(socketPath: string, cmd: string, problem: string) {
    super(
      `the master at ${socketPath} answered "${cmd}" in a form this prefork ${PREFORK_VERSION} (control protocol ${CONTROL_PROTOCOL}) does not read (${problem}): it runs another prefork version. Use the prefork that started it, or move the service onto this one by hand: kill -USR2 the master, and once the new master is ready, kill -WINCH and then -QUIT the old one (docs/upgrade.md)`,
    );
    this.name = 'ControlProtocolError';
  }
}

/** Sends one JSON line to a control socket and returns the one line it answers, parsed. */
function exchange(
  socketPath: string,
  request: ControlRequest,
  timeoutMs: number,
): Promise<unknown> {
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
        resolve(JSON.parse(text));
      } catch {
        // Empty or cut short: a master exiting (or killed) as it answered, not another version.
        reject(new Error(`no complete answer from ${socketPath} (not one JSON line)`));
      }
    });
  });
}

/**
 * Sends one request to a control socket and returns its result, validated against the
 * request's schema; throws the master's error, or a {@link ControlProtocolError} for a reply
 * of a shape this prefork does not know.
 */
export async function controlRequest<R extends ControlRequest>(
  socketPath: string,
  request: R,
  timeoutMs = 5000,
): Promise<ControlResult<R['cmd']>> {
  const raw = await exchange(socketPath, request, timeoutMs);
  const reply = v.safeParse(ControlReplySchema, raw);
  if (!reply.success) {
    throw new ControlProtocolError(socketPath, request.cmd, describeIssues(reply.issues));
  }
  if (!reply.output.ok) throw new Error(reply.output.error);
  const schema: v.GenericSchema = ControlResultSchemas[request.cmd];
  const result = v.safeParse(schema, reply.output.result);
  if (!result.success) {
    throw new ControlProtocolError(socketPath, request.cmd, describeIssues(result.issues));
  }
  return result.output as ControlResult<R['cmd']>;
}

/**
 * The status of the master with `pid`, if it is a live prefork master of `root` (it answers on
 * its control socket with the same pid and root); undefined otherwise. Never signals anything.
 */
export async function queryMaster(root: string, pid: number): Promise<MasterStatus | undefined> {
  try {
    const status = await controlRequest(controlSocketPath(root, pid), { cmd: 'status' });
    return status.pid === pid && status.root === root ? status : undefined;
  } catch (error) {
    // A master of another prefork that answers in a shape this one does not read is alive:
    // say so, rather than call it gone.
    if (error instanceof ControlProtocolError) throw error;
    return undefined;
  }
}

/**
 * {@link queryMaster} for a command a person waits on: a master stopped by SIGSTOP or a
 * debugger (state T) cannot answer, so it is told at once, not after the control timeout.
 */
export async function queryMasterNow(root: string, pid: number): Promise<MasterStatus | undefined> {
  return processState(pid) === 'T' ? undefined : queryMaster(root, pid);
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
  const status = await queryMasterNow(root, pid);
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
