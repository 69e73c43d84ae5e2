import { renameSync, unlinkSync } from 'node:fs';
import { type PidfilePair, pidfilePair } from '../protocol/files.js';
import { writeFileAtomic } from './atomic-write.js';
import { assertSafeFile, readFileNoFollow } from './safe-path.js';

/** Writes a pidfile atomically. */
export function writePidfile(path: string, pid: number): void {
  writeFileAtomic(path, `${pid}\n`);
}

/**
 * The pid in a pidfile, or undefined when it is missing or holds no pid. A pidfile that is a
 * symlink is not read through.
 */
export function readPidfile(path: string): number | undefined {
  const text = readFileNoFollow(path)?.trim();
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
}

/** Removes a pidfile only if it still holds `pid`. Returns whether it did. */
export function removePidfileIfOurs(path: string, pid: number): boolean {
  if (readPidfile(path) !== pid) return false;
  try {
    unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Renames `from` to `to` if `from` still holds `pid` (the `.oldbin` dance). Returns whether it
 * did.
 */
export function movePidfileIfOurs(from: string, to: string, pid: number): boolean {
  if (readPidfile(from) !== pid) return false;
  assertSafeFile(to);
  renameSync(from, to);
  return true;
}

/** One of a root's two pidfiles, and the pid it holds (undefined: missing or empty). */
export interface PidfileEntry {
  /** `serving` is `prefork.pid`; `oldbin` the old master's during an upgrade. */
  role: keyof PidfilePair;
  path: string;
  pid: number | undefined;
}

/**
 * Both pidfiles of the serving pidfile `pidfile` (`prefork.pid`, then `prefork.pid.oldbin`)
 * with the pids they hold: the one place that reads the pair.
 */
export function readPidfilePair(pidfile: string): PidfileEntry[] {
  const pair = pidfilePair(pidfile);
  return (['serving', 'oldbin'] as const).map((role) => ({
    role,
    path: pair[role],
    pid: readPidfile(pair[role]),
  }));
}
