import { chmodSync, lstatSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../errors/index.js';
import { STATE_DIR } from '../protocol/files.js';
import { assertSafeDirectory } from './safe-path.js';

/**
 * Creates (or checks) `<root>/.prefork`: a real directory, not a symlink, owned by this user,
 * mode 0700. Returns its path.
 */
export function ensureStateDir(root: string): string {
  const dir = join(root, STATE_DIR);
  assertSafeDirectory(root);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new UsageError(`cannot create ${dir}: ${(error as Error).message}`, { cause: error });
    }
  }
  const st = lstatSync(dir);
  if (st.isSymbolicLink() || !st.isDirectory()) {
    throw new UsageError(`${dir} is not a directory (a symlink?): remove it and start again`);
  }
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new UsageError(`${dir} belongs to uid ${st.uid}, not to you: prefork will not use it`);
  }
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
  return dir;
}

/** `<root>/.prefork`, without creating it. */
export function stateDirPath(root: string): string {
  return join(root, STATE_DIR);
}
