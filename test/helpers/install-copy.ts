import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { REPO } from './app-root.js';

/** A copy of prefork as `npm install` would lay it out: bin, dist, production dependencies. */
export interface InstallCopy {
  dir: string;
  /** Its `bin/prefork`. */
  bin: string;
  remove(): void;
}

/**
 * Copies this checkout's prefork (bin, dist, package.json and the production dependencies, as
 * `npm ls --omit=dev` lists them) into a fresh directory of `mode`: 0755 for an install every
 * user can read wherever the clone lives, 0700 for one the workers' user cannot.
 */
export function installCopy(mode: number): InstallCopy {
  const dir = mkdtempSync(join(tmpdir(), 'prefork-install-'));
  chmodSync(dir, mode);
  for (const part of ['bin', 'dist', 'package.json']) {
    cpSync(join(REPO, part), join(dir, part), { recursive: true });
  }
  const listed = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], {
    cwd: REPO,
    encoding: 'utf8',
  });
  const modules = join(REPO, 'node_modules');
  for (const path of listed.split('\n')) {
    if (!path.startsWith(`${modules}/`)) continue;
    cpSync(path, join(dir, relative(REPO, path)), { recursive: true });
  }
  return {
    dir,
    bin: join(dir, 'bin', 'prefork'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
