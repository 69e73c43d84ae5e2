import { closeSync, constants, openSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { writeFileAtomic } from './atomic-write.js';
import { assertSafeFile } from './safe-path.js';

/** Writes a pidfile atomically. */
export function writePidfile(path: string, pid: number): void {
  writeFileAtomic(path, `${pid}\n`);
}

/**
 * The pid in a pidfile, or undefined when it is missing or holds no pid. A pidfile that is a
 * symlink is not read through.
 */
export function readPidfile(path: string): number | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    const text = readFileSync(fd, 'utf8').trim();
    return /^\d+$/.test(text) ? Number(text) : undefined;
  } finally {
    closeSync(fd);
  }
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
