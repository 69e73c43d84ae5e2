import * as v from 'valibot';
import {
  ENV_FD_NAMES,
  ENV_FDS,
  ENV_LISTEN_FDNAMES,
  ENV_LISTEN_FDS,
  ENV_LISTEN_PID,
  ENV_SOCKETS,
  FIRST_LISTEN_FD,
} from '../protocol/env.js';
import { type HandedSocket, HandedSocketsSchema } from '../protocol/handover.js';
import { describeIssues } from '../protocol/issues.js';

/** A listen socket handed to this process at start. */
export interface InheritedFd {
  fd: number;
  /** Bind name given by the old master (`127.0.0.1:8000`), or systemd's FileDescriptorName. */
  name: string | undefined;
  /** Came from systemd socket activation: never unlinked, passed on across USR2. */
  systemd: boolean;
  /** The old master's metrics socket (`--metrics-bind`), not an app socket. */
  metrics: boolean;
}

/** What a master hands over of each socket (the fields of `ListenSocket` that cross). */
export interface SocketToHand {
  bind: { name: string };
  systemd: boolean;
  metrics: boolean;
}

/** Prefixes of a name in the legacy `PREFORK_FD_NAMES` that mark what kind of socket it is. */
const SYSTEMD_PREFIX = 'systemd:';
const METRICS_PREFIX = 'metrics:';

/**
 * The environment that hands `sockets` (placed at fd 3, 4, ... in that order) to a new master:
 * `PREFORK_SOCKETS` (JSON, any character in a bind), and for a new master of a prefork that
 * predates it (handover protocol 1 or 2: a downgrade) the comma-joined pair, unless a bind
 * holds a comma that pair cannot carry.
 */
export function handedSocketsEnv(sockets: readonly SocketToHand[]): NodeJS.ProcessEnv {
  if (sockets.length === 0) return {};
  const handed: HandedSocket[] = sockets.map((socket, i) => ({
    fd: FIRST_LISTEN_FD + i,
    bind: socket.bind.name,
    role: socket.metrics ? 'metrics' : 'app',
    systemd: socket.systemd,
  }));
  const env: NodeJS.ProcessEnv = { [ENV_SOCKETS]: JSON.stringify({ sockets: handed }) };
  const names = sockets.map((socket) => {
    const prefix = socket.systemd ? SYSTEMD_PREFIX : socket.metrics ? METRICS_PREFIX : '';
    return `${prefix}${socket.bind.name}`;
  });
  if (names.every((name) => !name.includes(','))) {
    env[ENV_FDS] = handed.map((s) => String(s.fd)).join(',');
    env[ENV_FD_NAMES] = names.join(',');
  }
  return env;
}

/** `PREFORK_SOCKETS`, parsed; a value no prefork writes is an error naming the variable. */
function readHandedSockets(raw: string): InheritedFd[] {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new Error(`${ENV_SOCKETS} is not JSON: ${raw.slice(0, 200)}`);
  }
  const parsed = v.safeParse(HandedSocketsSchema, value);
  if (!parsed.success) {
    throw new Error(`${ENV_SOCKETS} is not a list of sockets: ${describeIssues(parsed.issues)}`);
  }
  return parsed.output.sockets.map((s) => ({
    fd: s.fd,
    name: s.bind,
    systemd: s.systemd,
    metrics: s.role === 'metrics',
  }));
}

/** The comma-joined pair an old master of handover protocol 1 or 2 passes. */
function readLegacyFds(fdList: string, nameList: string): InheritedFd[] {
  const fds = fdList.split(',').map((part) => {
    if (!/^\d+$/.test(part)) throw new Error(`${ENV_FDS}="${fdList}" is not a list of fds`);
    return Number(part);
  });
  const names = nameList.split(',');
  // A systemd socket keeps its "systemd" mark across upgrades through a name prefix, the
  // metrics socket its own.
  return fds.map((fd, i) => {
    const raw = names[i] || undefined;
    const systemd = raw?.startsWith(SYSTEMD_PREFIX) ?? false;
    const metrics = raw?.startsWith(METRICS_PREFIX) ?? false;
    const prefix = systemd ? SYSTEMD_PREFIX : metrics ? METRICS_PREFIX : '';
    return { fd, name: raw?.slice(prefix.length), systemd, metrics };
  });
}

/**
 * The listen sockets this process inherited: from an old master (`PREFORK_SOCKETS`, or the
 * `PREFORK_FDS` + `PREFORK_FD_NAMES` of an older one) or from systemd (`LISTEN_FDS`,
 * `LISTEN_PID`, `LISTEN_FDNAMES`). Malformed values are an error that names the variable.
 */
export function readInheritedFds(
  env: NodeJS.ProcessEnv = process.env,
  pid: number = process.pid,
): InheritedFd[] {
  const structured = env[ENV_SOCKETS];
  if (structured !== undefined && structured !== '') return readHandedSockets(structured);
  const fromPrefork = env[ENV_FDS];
  if (fromPrefork !== undefined && fromPrefork !== '') {
    return readLegacyFds(fromPrefork, env[ENV_FD_NAMES] ?? '');
  }
  const count = env[ENV_LISTEN_FDS];
  if (count !== undefined && env[ENV_LISTEN_PID] === String(pid)) {
    if (!/^\d+$/.test(count)) throw new Error(`${ENV_LISTEN_FDS}="${count}" is not a number`);
    const names = (env[ENV_LISTEN_FDNAMES] ?? '').split(':');
    return Array.from({ length: Number(count) }, (_, i) => ({
      fd: FIRST_LISTEN_FD + i,
      name: names[i] || undefined,
      systemd: true,
      metrics: false,
    }));
  }
  return [];
}
