import { execFileSync } from 'node:child_process';
import { UsageError } from '../errors/index.js';
import type { Release } from '../release/read-release.js';
import type { WorkerIdentity } from './worker-identity.js';
import { WORKER_SCRIPT } from './worker-process.js';

/** How long the check may take (one short-lived `node` as the workers' user). */
const CHECK_MS = 30_000;

/**
 * Run as the workers' user: for each path, the first directory on the way that it cannot
 * search, or the path itself when it cannot read it. Prints a JSON array, `null` per path
 * that is fine. Paths arrive as arguments, never inside the code.
 */
const PROBE = `
const { accessSync, constants } = require('node:fs');
const { dirname } = require('node:path');
const found = process.argv.slice(1).map((target) => {
  const dirs = [];
  for (let dir = dirname(target); ; dir = dirname(dir)) {
    dirs.unshift(dir);
    if (dir === dirname(dir)) break;
  }
  for (const dir of dirs) {
    try { accessSync(dir, constants.X_OK); } catch (e) { return { blocked: dir, code: e.code }; }
  }
  try { accessSync(target, constants.R_OK); } catch (e) { return { blocked: target, code: e.code }; }
  return null;
});
process.stdout.write(JSON.stringify(found));
`;

/**
 * Checks, before any worker is spawned, that the workers' user (`--user`/`--group`) can run
 * Node and read what a worker loads: prefork's worker entry and the release's entry module.
 * Otherwise every worker would die with "Cannot find module" and the master with them. The
 * probe runs as that user, exactly as workers are spawned (libuv drops supplementary groups),
 * so it sees what they will see. Throws a {@link UsageError} naming the path, the directory
 * that blocks it, and the fix.
 */
export function assertWorkersCanRead(
  identity: WorkerIdentity | undefined,
  release: Release,
  who: string,
): void {
  if (identity === undefined) return;
  const paths = [WORKER_SCRIPT, release.entry];
  let out: string;
  try {
    out = execFileSync(process.execPath, ['-e', PROBE, ...paths], {
      ...identity,
      cwd: '/',
      encoding: 'utf8',
      timeout: CHECK_MS,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    throw new UsageError(
      `${who} cannot run ${process.execPath} (${(error as Error).message.split('\n')[0]}): install Node where that user can run it, or choose another --user`,
      { cause: error },
    );
  }
  const found = JSON.parse(out) as ({ blocked: string; code: string } | null)[];
  for (const [i, problem] of found.entries()) {
    if (problem === null) continue;
    const path = paths[i] as string;
    const what = i === 0 ? "prefork's worker entry" : `release ${release.name}'s entry`;
    const how =
      problem.blocked === path
        ? `it is not readable (${problem.code}): "chmod o+r ${path}"`
        : `${problem.blocked} is not searchable (${problem.code}): "chmod o+x ${problem.blocked}"`;
    throw new UsageError(
      `${who} cannot read ${what} ${path}: ${how}, or ${i === 0 ? 'install prefork' : 'keep the releases'} where that user can read it; nothing was started`,
    );
  }
}

/** How messages name the workers' identity: `the workers' user (--user nobody --group nogroup)`. */
export function workersUserLabel(user: string | undefined, group: string | undefined): string {
  const flags = [user && `--user ${user}`, group && `--group ${group}`].filter(Boolean).join(' ');
  return `the workers' user (${flags})`;
}
