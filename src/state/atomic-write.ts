import { randomBytes } from 'node:crypto';
import {
  closeSync,
  constants,
  fsyncSync,
  openSync,
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
