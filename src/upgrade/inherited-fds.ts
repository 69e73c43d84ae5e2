import {
  ENV_FD_NAMES,
  ENV_FDS,
  ENV_LISTEN_FDNAMES,
  ENV_LISTEN_FDS,
  ENV_LISTEN_PID,
  FIRST_LISTEN_FD,
} from '../protocol/index.js';

/** A listen socket handed to this process at start. */
export interface InheritedFd {
  fd: number;
  /** Bind name given by the old master (`127.0.0.1:8000`), or systemd's FileDescriptorName. */
  name: string | undefined;
  /** Came from systemd socket activation: never unlinked, passed on across USR2. */
  systemd: boolean;
}

/**
 * The listen sockets this process inherited: from an old master (`PREFORK_FDS` +
 * `PREFORK_FD_NAMES`) or from systemd (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`).
 * Malformed values are an error that names the variable.
 */
export function readInheritedFds(
  env: NodeJS.ProcessEnv = process.env,
  pid: number = process.pid,
): InheritedFd[] {
  const fromPrefork = env[ENV_FDS];
  if (fromPrefork !== undefined && fromPrefork !== '') {
    const fds = fromPrefork.split(',').map((part) => {
      if (!/^\d+$/.test(part)) throw new Error(`${ENV_FDS}="${fromPrefork}" is not a list of fds`);
      return Number(part);
    });
    const names = (env[ENV_FD_NAMES] ?? '').split(',');
    // A systemd socket keeps its "systemd" mark across upgrades through a name prefix.
    return fds.map((fd, i) => {
      const raw = names[i] || undefined;
      const systemd = raw?.startsWith('systemd:') ?? false;
      return { fd, name: systemd ? raw?.slice('systemd:'.length) : raw, systemd };
    });
  }
  const count = env[ENV_LISTEN_FDS];
  if (count !== undefined && env[ENV_LISTEN_PID] === String(pid)) {
    if (!/^\d+$/.test(count)) throw new Error(`${ENV_LISTEN_FDS}="${count}" is not a number`);
    const names = (env[ENV_LISTEN_FDNAMES] ?? '').split(':');
    return Array.from({ length: Number(count) }, (_, i) => ({
      fd: FIRST_LISTEN_FD + i,
      name: names[i] || undefined,
      systemd: true,
    }));
  }
  return [];
}
