import { randomBytes } from 'node:crypto';
import { lstatSync, readlinkSync, renameSync, symlinkSync, unlinkSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { UsageError } from '../errors/index.js';
import { CURRENT_LINK } from '../protocol/files.js';
import { type Release, readRelease } from './read-release.js';

/** Path of the `current` symlink in an app root. */
export function currentPath(root: string): string {
  return join(root, CURRENT_LINK);
}

/**
 * Points `current` at `releaseDir` atomically: a new symlink under a temporary name, renamed
 * over the old one, so `current` never stops existing. The link is relative
 * (`releases/v2`), so the root can move.
 */
export function pointCurrent(root: string, releaseDir: string): void {
  const link = currentPath(root);
  const target = relative(root, resolve(releaseDir));
  const temp = join(root, `.${CURRENT_LINK}.${randomBytes(6).toString('hex')}`);
  symlinkSync(target, temp);
  try {
    renameSync(temp, link);
  } catch (error) {
    unlinkSync(temp);
    throw error;
  }
}

/** What `current` points at, as written in the link, or undefined when there is no link. */
export function readCurrentTarget(root: string): string | undefined {
  try {
    if (!lstatSync(currentPath(root)).isSymbolicLink()) return undefined;
    return readlinkSync(currentPath(root));
  } catch {
    return undefined;
  }
}

/** Reads the release `current` points at, failing with a clear error when there is none. */
export function readCurrentRelease(root: string, nodeVersion: string = process.version): Release {
  if (readCurrentTarget(root) === undefined) {
    throw new UsageError(
      `${currentPath(root)} is not a symlink to a release: run "prefork start releases/<name>" to create it`,
    );
  }
  return readRelease(currentPath(root), nodeVersion);
}
