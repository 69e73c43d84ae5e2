/**
 * Environment variables that cross a process boundary: the handover from an old master to the
 * new one it spawns (docs/upgrade.md), what a master tells its workers, and systemd's socket
 * activation, readiness and watchdog variables for exec workers.
 */

/**
 * The listen sockets a new master inherits, as JSON (`HandedSockets` in `handover.ts`): each
 * socket's fd, bind and role. Set by masters of handover protocol 3 and later.
 */
export const ENV_SOCKETS = 'PREFORK_SOCKETS';
/**
 * The same sockets as masters of handover protocols 1 and 2 passed them, still set for a new
 * master of such a prefork (a downgrade) and still read from an old master of one: their
 * comma-separated fds (`3,4`), and their comma-separated names in the same order.
 */
export const ENV_FDS = 'PREFORK_FDS';
export const ENV_FD_NAMES = 'PREFORK_FD_NAMES';
/** fd on which a spawned master reports readiness (or its boot error) to whoever spawned it. */
export const ENV_READY_FD = 'PREFORK_READY_FD';
/**
 * The version of the handover between a master and the one it spawns: these variables, the
 * socket names and the ready message. Set by every master that spawns one; absent means 1.
 */
export const ENV_PROTOCOL = 'PREFORK_PROTOCOL';

/** Pid of the old master, set in a master spawned by USR2 (the name predates old/new master naming; kept so masters of earlier releases still understand each other). */
export const ENV_OLD_MASTER_PID = 'PREFORK_PARENT_PID';
/**
 * Set by an old master that starts its new master for a canary deploy (control request
 * `upgrade` with `workers`): the new master starts with this many workers instead of its
 * configured count, and records request figures from the start (docs/canary.md).
 */
export const ENV_CANARY_WORKERS = 'PREFORK_CANARY_WORKERS';
/** JSON {@link WorkerOptions} handed to a worker; removed from its env before the app loads. */
export const ENV_WORKER_OPTIONS = 'PREFORK_WORKER_OPTIONS';
/** systemd socket activation (sd_listen_fds(3)). */
export const ENV_LISTEN_FDS = 'LISTEN_FDS';
export const ENV_LISTEN_PID = 'LISTEN_PID';
export const ENV_LISTEN_FDNAMES = 'LISTEN_FDNAMES';
/** systemd readiness (sd_notify(3)): the datagram socket an exec worker sends `READY=1` on. */
export const ENV_NOTIFY_SOCKET = 'NOTIFY_SOCKET';
/** systemd watchdog (sd_watchdog_enabled(3)): how often, and which pid, must send `WATCHDOG=1`. */
export const ENV_WATCHDOG_USEC = 'WATCHDOG_USEC';
export const ENV_WATCHDOG_PID = 'WATCHDOG_PID';

/** What prefork sets in each exec worker's environment; a release's `env` may not set these. */
export const EXEC_WORKER_ENV = [
  ENV_LISTEN_FDS,
  ENV_LISTEN_PID,
  ENV_LISTEN_FDNAMES,
  ENV_NOTIFY_SOCKET,
  ENV_WATCHDOG_USEC,
  ENV_WATCHDOG_PID,
] as const;

/** Variables prefork sets for its own processes; stripped from the environment it passes on. */
export const INTERNAL_ENV = [
  ENV_PROTOCOL,
  ENV_SOCKETS,
  ENV_FDS,
  ENV_FD_NAMES,
  ENV_READY_FD,
  ENV_OLD_MASTER_PID,
  ENV_CANARY_WORKERS,
  ENV_WORKER_OPTIONS,
  ...EXEC_WORKER_ENV,
] as const;

/** The first fd a passed listen socket occupies (after stdin, stdout, stderr). */
export const FIRST_LISTEN_FD = 3;

/**
 * The listen backlog prefork's sockets are listened with (the kernel caps it at
 * `net.core.somaxconn`, 4096 by default since Linux 5.4), as systemd's socket units do. Node's
 * default, 511, overflowed under a reconnect storm of 2,000 WebSocket clients
 * (`npm run bench:storm`: thousands of `ListenOverflows`). Node reads it only as `listen()`'s
 * second argument when listening on an fd: `{ fd, backlog }` is ignored.
 */
export const LISTEN_BACKLOG = 4096;
