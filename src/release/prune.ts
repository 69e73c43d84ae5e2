import { lstatSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { queryMaster } from '../control/client.js';
import { EXIT, PreforkError } from '../errors/index.js';
import { readHistory, readJournal } from '../journal/journal.js';
import { isAlive, processTitle } from '../process/alive.js';
import { controlSocketPid, RELEASES_DIR } from '../protocol/files.js';
import { releaseOfMasterTitle } from '../protocol/titles.js';
import { readPidfilePair } from '../state/pidfile.js';
import { stateDirPath } from '../state/state-dir.js';
import { currentReleaseName, releaseNames } from './release-names.js';

/** What `prefork releases prune` decided for one release. */
export interface PruneRow {
  name: string;
  /** When it was installed (the directory's time) or last deployed, whichever is later. */
  at: string;
  action: 'keep' | 'remove' | 'protect';
  /** Why it is kept though it is past `--keep`. */
  why?: string;
}

/** A staging directory of an install or prune that was killed: removed when older than this. */
const STALE_STAGING_MS = 60 * 60 * 1000;

/** Every pid that may be a master of `root`: its pidfiles and its control sockets. */
function masterPids(root: string, pidfile: string): number[] {
  const pids = new Set<number>();
  for (const { pid } of readPidfilePair(pidfile)) if (pid !== undefined) pids.add(pid);
  let names: string[] = [];
  try {
    names = readdirSync(stateDirPath(root));
  } catch {
    names = [];
  }
  for (const name of names) {
    const pid = controlSocketPid(name);
    if (pid !== undefined) pids.add(pid);
  }
  return [...pids].filter(isAlive);
}

/**
 * The releases the live masters of `root` run (old, new, and any other), by name. A master that
 * does not answer is read from its process title (`prefork: master (old) [v1]`); one whose
 * release cannot be told stops the prune, since removing its release could break it.
 */
async function liveReleases(root: string, pidfile: string): Promise<Map<string, number>> {
  const live = new Map<string, number>();
  for (const pid of masterPids(root, pidfile)) {
    const status = await queryMaster(root, pid);
    if (status !== undefined) {
      live.set(basename(status.releaseDir), pid);
      continue;
    }
    const title = processTitle(pid);
    const name = releaseOfMasterTitle(title);
    if (title.startsWith('prefork: master') && name === undefined) {
      throw new PreforkError(
        `master ${pid} does not answer and its title ("${title}") does not name its release: cannot tell which release it runs, so nothing was removed; see "prefork status"`,
        EXIT.failed,
      );
    }
    if (name !== undefined) live.set(name, pid);
  }
  return live;
}

/**
 * Decides which releases of `root` go: the `keep` most recent (installed or deployed) stay,
 * and of the rest, those `current`, the rollback target, a deploy in flight or a live master
 * needs stay too.
 */
export async function planPrune(root: string, pidfile: string, keep: number): Promise<PruneRow[]> {
  const dir = join(root, RELEASES_DIR);
  const names = releaseNames(root);
  const history = readHistory(root);
  const protectedBy = new Map<string, string>();
  const protect = (name: string | undefined, why: string) => {
    if (name !== undefined && !protectedBy.has(name)) protectedBy.set(name, why);
  };
  protect(currentReleaseName(root), 'current');
  for (const [name, pid] of await liveReleases(root, pidfile)) {
    protect(name, `run by master ${pid}`);
  }
  const lastDeploy = history.filter((entry) => entry.kind !== 'upgrade').at(-1);
  protect(lastDeploy?.previous, 'the rollback target');
  const journal = readJournal(root);
  if (journal !== undefined && journal.outcome !== 'done' && journal.outcome !== 'rolled-back') {
    protect(journal.release, `its ${journal.kind} is ${journal.outcome}`);
    protect(journal.previous, `the ${journal.kind} in flight goes back to it`);
  }
  const deployedAt = new Map(history.map((entry) => [entry.release, Date.parse(entry.at)]));
  const dated = names.map((name) => {
    const installed = statSync(join(dir, name)).mtimeMs;
    const at = Math.max(installed, deployedAt.get(name) ?? 0);
    return { name, at };
  });
  dated.sort((a, b) => b.at - a.at || b.name.localeCompare(a.name));
  return dated.map(({ name, at }, i) => {
    const why = protectedBy.get(name);
    const action = i < keep ? 'keep' : why === undefined ? 'remove' : 'protect';
    return {
      name,
      at: new Date(at).toISOString(),
      action,
      ...(action === 'protect' ? { why } : {}),
    };
  });
}

/**
 * Removes one release: renamed to a hidden name first, so it leaves releases/ whole in one
 * step and a removal cut short never leaves half a release under its name.
 */
export function removeRelease(root: string, name: string): void {
  const dir = join(root, RELEASES_DIR);
  const doomed = join(dir, `.prune-${name}-${process.pid}`);
  renameSync(join(dir, name), doomed);
  rmSync(doomed, { recursive: true, force: true });
}

/** Removes what a killed prune left behind, and a killed install's staging once an hour old. */
export function removeStaleStaging(root: string): string[] {
  const dir = join(root, RELEASES_DIR);
  const removed: string[] = [];
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!/^\.(install|prune)-/.test(name)) continue;
    const path = join(dir, name);
    // A `.prune-` directory is on its way out already; an `.install-` one may be in use.
    const young = Date.now() - lstatSync(path).mtimeMs < STALE_STAGING_MS;
    if (name.startsWith('.install-') && young) continue;
    rmSync(path, { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}
