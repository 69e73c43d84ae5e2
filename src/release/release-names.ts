import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RELEASES_DIR } from '../protocol/files.js';
import { readCurrentTarget } from './current-link.js';

/**
 * The release directories in `<root>/releases/`, by name. Hidden ones are an install's or a
 * prune's staging, not releases.
 */
export function releaseNames(root: string): string[] {
  const dir = join(root, RELEASES_DIR);
  try {
    return readdirSync(dir).filter(
      (n) => !n.startsWith('.') && statSync(join(dir, n)).isDirectory(),
    );
  } catch {
    return [];
  }
}

/** The name of the release `current` points at (`v2` for `releases/v2`), if any. */
export function currentReleaseName(root: string): string | undefined {
  return readCurrentTarget(root)?.replace(/\/$/, '').split('/').pop();
}
