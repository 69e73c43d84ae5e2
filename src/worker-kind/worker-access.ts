import { execFileSync } from 'node:child_process';
import { UsageError } from '../errors/index.js';
import type { Release } from '../release/read-release.js';
import { WORKER_SCRIPT } from './node-worker.js';
import type { WorkerIdentity } from './worker-identity.js';

/** How long the check may take (one short-lived `node` as the workers' user). */
const CHECK_MS = 30_000;

/**
 * Run as the workers' user: for each path, the first directory on the way that it cannot
 * search, or the path itself when it cannot read it (or run it, for a path given as `x:PATH`).
 * Prints a JSON array, `null` per path that is fine. Paths arrive as arguments, never inside
 * the code.
 */
const PROBE = `
const { accessSync, constants } = require('node:fs');
const { dirname } = require('node:path');
const found = process.argv.slice(1).map((arg) => {
  const run = arg.startsWith('x:');
  const target = arg.slice(2);
  const dirs = [];
  for (let dir = dirname(target); ; dir = dirname(dir)) {
    dirs.unshift(dir);
    if (dir === dirname(dir)) break;
  }
  for (const dir of dirs) {
    try { accessSync(dir, constants.X_OK); } catch (e) { return { blocked: dir, code: e.code }; }
  }
  try { accessSync(target, run ? constants.X_OK : constants.R_OK); } catch (e) { return { blocked: target, code: e.code }; }
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
  // An exec worker loads nothing of prefork's: only its program must be runnable (a bare name
  // was resolved on PATH, or refused, when the release was read).
  const checks: { path: string; mode: 'r' | 'x'; what: string }[] =
    release.kind === 'node'
      ? [
          { path: WORKER_SCRIPT, mode: 'r', what: "prefork's worker entry" },
          { path: release.entry, mode: 'r', what: `release ${release.name}'s entry` },
        ]
      : [
          {
            path: release.exec.command[0] as string,
            mode: 'x',
            what: `release ${release.name}'s command`,
          },
        ];
  let out: string;
  try {
    out = execFileSync(
      process.execPath,
      ['-e', PROBE, ...checks.map((c) => `${c.mode}:${c.path}`)],
      {
        ...identity,
        cwd: '/',
        encoding: 'utf8',
        timeout: CHECK_MS,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
  } catch (error) {
    throw new UsageError(
      `${who} cannot run ${process.execPath} (${(error as Error).message.split('\n')[0]}): install Node where that user can run it, or choose another --user`,
      { cause: error },
    );
  }
  const found = JSON.parse(out) as ({ blocked: string; code: string } | null)[];
  for (const [i, problem] of found.entries()) {
    if (problem === null) continue;
    const { path, mode, what } = checks[i] as (typeof checks)[number];
    const how =
      problem.blocked === path
        ? mode === 'x'
          ? `it is not executable for that user (${problem.code}): "chmod o+rx ${path}"`
          : `it is not readable (${problem.code}): "chmod o+r ${path}"`
        : `${problem.blocked} is not searchable (${problem.code}): "chmod o+x ${problem.blocked}"`;
    throw new UsageError(
      `${who} cannot ${mode === 'x' ? 'run' : 'read'} ${what} ${path}: ${how}, or ${path === WORKER_SCRIPT ? 'install prefork' : 'keep the releases'} where that user can read it; nothing was started`,
    );
  }
}

/** How messages name the workers' identity: `the workers' user (--user nobody --group nogroup)`. */
export function workersUserLabel(user: string | undefined, group: string | undefined): string {
  const flags = [user && `--user ${user}`, group && `--group ${group}`].filter(Boolean).join(' ');
  return `the workers' user (${flags})`;
}
