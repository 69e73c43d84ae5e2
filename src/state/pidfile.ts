import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { assertSafeFile } from './safe-path.js';

/**
 * Writes `content` to `path` atomically and owner-only (0600): a fresh temp file opened with
 * O_EXCL|O_NOFOLLOW, fsynced, renamed over `path`. The rename replaces a symlink at `path`
 * rather than writing through it. (write-file-atomic resolves symlinks and needs Node 22, so
 * these few lines are our own.)
 */
export function writeFileAtomic(path: string, content: string): void {
  assertSafeFile(path);
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}`);
  const fd = openSync(
    temp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(temp, path);
  } catch (error) {
    unlinkSync(temp);
    throw error;
  }
}

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
