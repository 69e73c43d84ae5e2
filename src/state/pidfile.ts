import { renameSync, unlinkSync } from 'node:fs';
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
