import { lookup } from 'node:dns/promises';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { type Bind, formatAddress, parseBind } from '../config/bind.js';
import { EXIT, PreforkError, UsageError } from '../errors/index.js';
import type { InheritedFd } from './handed-sockets.js';

/**
 * The libuv handle of a bound socket. The master holds it without ever listening or
 * accepting on it: its fd is given to every worker, which listens and accepts itself.
 */
interface ServerHandle {
  fd: number;
  getsockname?(out: Record<string, unknown>): number;
  close(callback?: () => void): void;
}

type CreateServerHandle = (
  address: string | undefined,
  port: number | undefined,
  addressType: number | undefined,
  fd?: number,
  flags?: number,
) => ServerHandle | number;

/**
 * `net._createServerHandle`, the function Node's cluster module uses to bind a socket in the
 * primary (SCHED_NONE) without listening on it. Semi-private; `test/unit/listen-sockets`
 * pins its behaviour so a Node upgrade that changes it fails loudly.
 */
const createServerHandle = (net as unknown as { _createServerHandle: CreateServerHandle })
  ._createServerHandle;

/** A bound listen socket a master owns (or shares with an old or new master). */
export interface ListenSocket {
  /** The bind it serves (its canonical name matches inherited sockets across upgrades). */
  bind: Bind;
  /** The fd workers get at 3, 4, ... */
  fd: number;
  /** Where it really listens: `127.0.0.1:41234` or `unix:/run/app.sock`. */
  address: string;
  /** TCP port (after port 0 was resolved), for health checks and logs. */
  port: number | undefined;
  /** Inherited from an old master or systemd rather than bound here. */
  inherited: boolean;
  /** From systemd socket activation: never unlinked by prefork. */
  systemd: boolean;
  /** Serves the master's `GET /metrics` (`--metrics-bind`): the master accepts on it, not workers. */
  metrics: boolean;
  handle: ServerHandle;
}

/** The option a bind is given with, for error messages. */
function optionOf(metrics: boolean): string {
  return metrics ? '--metrics-bind' : '--bind';
}

/** How an error names a bind: `127.0.0.1:8000`, or `127.0.0.1:9464 (--metrics-bind)`. */
function label(bind: Bind, metrics: boolean): string {
  return metrics ? `${bind.name} (--metrics-bind)` : bind.name;
}

function bindError(bind: Bind, errno: number, metrics: boolean): PreforkError {
  const code = getSystemErrorName(errno);
  const why: Record<string, string> = {
    EADDRINUSE: `the address is already in use: stop whatever listens there, or pick another ${optionOf(metrics)}`,
    EACCES: 'permission denied: ports below 1024 need root (use --user/--group to drop it)',
    EADDRNOTAVAIL: 'no interface has that address: bind an address of this machine',
  };
  return new UsageError(`cannot bind ${label(bind, metrics)}: ${why[code] ?? code} (${code})`);
}

function addressOf(handle: ServerHandle, bind: Bind): { address: string; port?: number } {
  if (bind.kind === 'unix') return { address: bind.name };
  const out: Record<string, unknown> = {};
  handle.getsockname?.(out);
  const port = Number(out.port);
  return { address: formatAddress(String(out.address), port), port };
}

/** A Unix socket file left by a master that died: nothing accepts on it any more. */
async function removeStaleUnixSocket(
  bind: Extract<Bind, { kind: 'unix' }>,
  metrics: boolean,
): Promise<void> {
  if (!existsSync(bind.path)) return;
  if (!lstatSync(bind.path).isSocket()) {
    throw new UsageError(
      `cannot bind ${label(bind, metrics)}: ${bind.path} exists and is not a socket`,
    );
  }
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(bind.path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) {
    throw new UsageError(
      `cannot bind ${label(bind, metrics)}: another process listens on it; stop it or pick another path`,
    );
  }
  unlinkSync(bind.path);
}

async function bindNew(bind: Bind, metrics: boolean): Promise<ListenSocket> {
  let result: ServerHandle | number;
  if (bind.kind === 'unix') {
    await removeStaleUnixSocket(bind, metrics);
    result = createServerHandle(bind.path, -1, -1);
  } else {
    let host = bind.host;
    let family: number | undefined;
    if (host !== undefined) {
      family = net.isIP(host);
      if (family === 0) {
        try {
          const found = await lookup(host);
          host = found.address;
          family = found.family;
        } catch {
          throw new UsageError(
            `cannot bind ${label(bind, metrics)}: cannot resolve host "${bind.host}"`,
          );
        }
      }
    }
    result = createServerHandle(host, bind.port, family);
  }
  if (typeof result === 'number') throw bindError(bind, result, metrics);
  const { address, port } = addressOf(result, bind);
  // libuv defers EADDRINUSE from bind() to listen(), which only workers call: a socket that
  // did not get its port is unbound, so check what it is bound to.
  if (bind.kind === 'tcp' && bind.port !== 0 && port !== bind.port) {
    result.close();
    throw bindError(bind, -constants.errno.EADDRINUSE, metrics);
  }
  return {
    bind,
    fd: result.fd,
    address,
    port,
    inherited: false,
    systemd: false,
    metrics,
    handle: result,
  };
}

function adopt(inherited: InheritedFd): ListenSocket {
  const result = createServerHandle(undefined, undefined, undefined, inherited.fd);
  if (typeof result === 'number') {
    throw new PreforkError(
      `inherited fd ${inherited.fd} (${inherited.name ?? 'unnamed'}) is not a usable socket: ${getSystemErrorName(result)}`,
      EXIT.failed,
    );
  }
  const out: Record<string, unknown> = {};
  const isTcp = result.getsockname?.(out) === 0 && typeof out.port === 'number';
  const actual = isTcp ? formatAddress(String(out.address), Number(out.port)) : undefined;
  // An old master passes canonical bind names; systemd passes FileDescriptorName=, or nothing.
  let bind: Bind;
  if (!inherited.systemd && inherited.name?.startsWith('unix:')) {
    bind = parseBind(inherited.name);
  } else if (actual !== undefined) {
    bind = { ...parseBind(actual), name: inherited.name ?? actual };
  } else {
    const name = inherited.name ?? `fd:${inherited.fd}`;
    bind = { kind: 'unix', path: name.replace(/^unix:/, ''), name };
  }
  return {
    bind,
    fd: result.fd,
    address: actual ?? bind.name,
    port: isTcp ? Number(out.port) : undefined,
    inherited: true,
    systemd: inherited.systemd,
    metrics: inherited.metrics,
    handle: result,
  };
}

/** True when `bind` is already served by a socket systemd handed over. */
function servedBySystemd(bind: Bind, sockets: ListenSocket[]): boolean {
  return (
    bind.kind === 'tcp' && bind.port !== 0 && sockets.some((s) => s.systemd && s.port === bind.port)
  );
}

/**
 * Opens the listen sockets for `binds` (and `metricsBind`, marked `metrics`): an inherited
 * socket whose name and kind match a bind is reused (same socket, no rebind), inherited sockets
 * no bind asks for are closed (systemd's are always kept), and the remaining binds are bound
 * anew. On failure everything opened here is closed again.
 */
export async function openListenSockets(
  binds: Bind[],
  inherited: InheritedFd[],
  metricsBind?: Bind,
): Promise<ListenSocket[]> {
  const sockets: ListenSocket[] = [];
  const wants = (socket: ListenSocket) =>
    socket.metrics
      ? socket.bind.name === metricsBind?.name
      : socket.systemd || binds.some((b) => b.name === socket.bind.name);
  try {
    const adopted = inherited.map(adopt);
    for (const socket of adopted) {
      if (wants(socket)) sockets.push(socket);
      else socket.handle.close();
    }
    for (const bind of binds) {
      const served = sockets.some((s) => !s.metrics && s.bind.name === bind.name);
      if (served || servedBySystemd(bind, sockets)) continue;
      sockets.push(await bindNew(bind, false));
    }
    if (metricsBind !== undefined && !sockets.some((s) => s.metrics)) {
      sockets.push(await bindNew(metricsBind, true));
    }
    return sockets;
  } catch (error) {
    closeListenSockets(sockets, HANDED_BACK);
    throw error;
  }
}

/**
 * The other masters that may still serve this master's sockets when it closes them. This is
 * the one place that decides which Unix socket files a master may unlink.
 */
export interface SocketSharers {
  /**
   * The new master this one started by USR2, while it runs: it inherited every socket, and
   * once ready it said which binds it serves (`binds`; undefined before that: all of them).
   */
  newMaster: { binds: ReadonlySet<string> | undefined } | undefined;
  /**
   * The old master that handed this one its sockets still runs (an upgrade being undone, or
   * this master failing to start): the inherited sockets are still its own.
   */
  oldMasterAlive: boolean;
}

/** Sharers when sockets opened for a start that failed are closed: the inherited ones go back. */
export const HANDED_BACK: SocketSharers = { newMaster: undefined, oldMasterAlive: true };

/** True when another process may still serve `socket`, so its file must stay. */
export function sharedWithOthers(socket: ListenSocket, sharers: SocketSharers): boolean {
  if (socket.systemd) return true;
  if (sharers.newMaster !== undefined) {
    const { binds } = sharers.newMaster;
    if (binds === undefined || binds.has(socket.bind.name)) return true;
  }
  return socket.inherited && sharers.oldMasterAlive;
}

/**
 * Closes this process's handles on the sockets and removes the Unix socket files among them,
 * except systemd's and those another master may still serve ({@link SocketSharers}). A kept
 * Unix socket's handle is left open for the process exit to close: libuv unlinks the path
 * when it closes a pipe it bound itself.
 */
export function closeListenSockets(sockets: ListenSocket[], sharers: SocketSharers): void {
  for (const socket of sockets) {
    const isUnix = socket.bind.kind === 'unix';
    if (isUnix && sharedWithOthers(socket, sharers)) continue;
    socket.handle.close();
    if (socket.bind.kind === 'unix') {
      try {
        unlinkSync(socket.bind.path);
      } catch {
        // already gone
      }
    }
  }
}
