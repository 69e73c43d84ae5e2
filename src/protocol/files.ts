/**
 * The files and directories of an app root (SPEC §1), and the names prefork gives its own files
 * in the state directory. The only place these names are spelled.
 */
/** Directory holding the releases. */
export const RELEASES_DIR = 'releases';
/** Symlink to the release that should be running. */
export const CURRENT_LINK = 'current';
/** Default pidfile of the serving master. */
export const PIDFILE = 'prefork.pid';
/** Suffix the old master's pidfile gets during an upgrade. */
export const OLDBIN_SUFFIX = '.oldbin';
/** In a release directory: makes it an exec release (any executable; docs/exec-releases.md). */
export const EXEC_RELEASE_FILE = 'prefork.json';
/** Optional configuration file. */
export const CONFIG_FILE = 'prefork.config.json';
/** prefork's own state directory (mode 0700). */
export const STATE_DIR = '.prefork';

/**
 * The notify socket (`NOTIFY_SOCKET`) of one exec worker of the master with this pid, relative
 * to {@link STATE_DIR}: one per worker, so a message names its sender by where it arrives.
 */
export function notifySocketName(masterPid: number, workerSeq: number): string {
  return `notify-${masterPid}-${workerSeq}.sock`;
}

/** Control socket of the master with this pid, relative to {@link STATE_DIR}. */
export function controlSocketName(pid: number): string {
  return `master-${pid}.sock`;
}

/** The pid a {@link controlSocketName} names, or undefined for any other file name. */
export function controlSocketPid(name: string): number | undefined {
  const pid = /^master-(\d+)\.sock$/.exec(name)?.[1];
  return pid === undefined ? undefined : Number(pid);
}

/**
 * Under {@link STATE_DIR}: what the master with this pid left when it exited (its drain's
 * account, `exit-report.ts`), read and removed by the deploy that stopped it.
 */
export function exitReportName(pid: number): string {
  return `master-${pid}.exit.json`;
}

/** Under {@link STATE_DIR}: the journal of the deploy in progress (or the last one). */
export const JOURNAL_FILE = 'deploy.json';
/** Under {@link STATE_DIR}: the successful deploys, oldest first. */
export const HISTORY_FILE = 'history.json';
/** Under {@link STATE_DIR}: how many deploys ended each way. */
export const OUTCOMES_FILE = 'deploys.json';
/** Under {@link STATE_DIR}: the deploy lock (proper-lockfile). */
export const LOCK_FILE = 'deploy.lock';
/** Under {@link STATE_DIR}: the pid of the process holding {@link LOCK_FILE}, beside it. */
export const LOCK_OWNER_FILE = 'deploy.lock.pid';

/**
 * The two pidfiles of a root: the serving master's, and the old master's while an upgrade is in
 * flight (`prefork.pid.oldbin`). Everything that looks for masters reads these two.
 */
export interface PidfilePair {
  serving: string;
  oldbin: string;
}

/** The pidfile pair of the serving pidfile `pidfile` (`--pid`, `prefork.pid` by default). */
export function pidfilePair(pidfile: string): PidfilePair {
  return { serving: pidfile, oldbin: oldbinPath(pidfile) };
}

/** The old master's pidfile during an upgrade: `prefork.pid.oldbin` beside `prefork.pid`. */
export function oldbinPath(pidfile: string): string {
  return `${pidfile}${OLDBIN_SUFFIX}`;
}
