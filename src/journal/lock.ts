import { readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { EXIT, PreforkError } from '../errors/index.js';
import { isAlive } from '../process/alive.js';
import { LOCK_FILE, LOCK_OWNER_FILE } from '../protocol/files.js';
import { ensureStateDir } from '../state/state-dir.js';
import { readJournal } from './journal.js';

/** The held deploy lock of a root. */
export interface DeployLock {
  release(): Promise<void>;
}

/** The pid written beside the lock by its holder; undefined when absent or unreadable. */
function readOwner(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes the lock of a holder that was killed: the pid beside the lock names a process that is
 * gone or, with no pid there (a lock taken by a prefork before it wrote one), the journal says a
 * deploy runs whose process is gone. proper-lockfile's own `unlock` only releases a lock its
 * caller holds, so a dead holder's lock is removed as the directory it is.
 */
function breakDeadHolders(root: string, dir: string): void {
  const ownerPath = join(dir, LOCK_OWNER_FILE);
  const owner = readOwner(ownerPath);
  const journal = readJournal(root);
  const holder = owner ?? (journal?.outcome === 'running' ? journal.pid : undefined);
  if (holder === undefined || holder === process.pid || isAlive(holder)) return;
  rmSync(ownerPath, { force: true });
  try {
    rmdirSync(join(dir, LOCK_FILE));
  } catch {
    // not held (ENOENT), or taken again meanwhile: the lock below decides
  }
}

/**
 * Takes the deploy lock of `root` (`.prefork/deploy.lock`, by proper-lockfile: an atomic mkdir,
 * refreshed every second, stale after 5 s), writing the holder's pid beside it
 * (`deploy.lock.pid`). The lock of a holder that is gone (a deploy or rollback killed) is broken
 * at once. `waitMs` > 0 waits that long for it. Throws a {@link PreforkError} with exit code 4
 * when another deploy holds it.
 */
export async function takeDeployLock(root: string, waitMs = 0): Promise<DeployLock> {
  const dir = ensureStateDir(root);
  const lockfilePath = join(dir, LOCK_FILE);
  const ownerPath = join(dir, LOCK_OWNER_FILE);
  breakDeadHolders(root, dir);
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(dir, {
      lockfilePath,
      stale: 5000,
      update: 1000,
      realpath: false,
      retries:
        waitMs > 0 ? { retries: Math.ceil(waitMs / 250), minTimeout: 250, maxTimeout: 250 } : 0,
      onCompromised: () => {
        // The lock could not be refreshed (the state directory vanished?): keep going; the
        // journal still records every step.
      },
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new PreforkError(
        `another deploy or rollback holds the lock (${lockfilePath}): wait for it to finish, or see "prefork status"`,
        EXIT.locked,
        { cause: error },
      );
    }
    throw error;
  }
  try {
    writeFileSync(ownerPath, `${process.pid}\n`, { mode: 0o600 });
  } catch {
    // A full disk: the journal, written next, names this process too (and fails loudly).
  }
  return {
    async release() {
      if (readOwner(ownerPath) === process.pid) rmSync(ownerPath, { force: true });
      await release();
    },
  };
}
