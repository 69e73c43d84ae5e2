import { closeSync, constants, lstatSync, openSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { UsageError } from '../errors/index.js';

/**
 * Refuses a directory in which another user could swap prefork's files: one that is
 * world-writable without the sticky bit (docs/reliability.md, "Security").
 */
export function assertSafeDirectory(dir: string): void {
  const st = statSync(dir);
  if ((st.mode & 0o002) !== 0 && (st.mode & 0o1000) === 0) {
    throw new UsageError(
      `${dir} is world-writable without the sticky bit: put prefork's files in a directory only you can write`,
    );
  }
}

/** Refuses `path` when it exists as a symlink (prefork never writes through one). */
export function assertNotSymlink(path: string): void {
  try {
    if (lstatSync(path).isSymbolicLink()) {
      throw new UsageError(`${path} is a symlink: prefork does not follow it; remove it`);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** Both checks for a file prefork is about to create or replace. */
export function assertSafeFile(path: string): void {
  assertSafeDirectory(dirname(path));
  assertNotSymlink(path);
}

/** The JSON in `path`, or undefined when it is missing, unreadable, a symlink or not JSON. */
export function readJsonNoFollow<T>(path: string): T | undefined {
  const text = readFileNoFollow(path);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** The text of `path`, or undefined when it is missing, unreadable or a symlink (not followed). */
export function readFileNoFollow(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return undefined;
  }
  try {
    return readFileSync(fd, 'utf8');
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
