import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { EXIT, PreforkError } from '../errors/index.js';
import { isAlive } from '../process/alive.js';
import { LOCK_FILE } from '../protocol/files.js';
import { ensureStateDir } from '../state/state-dir.js';
import { readJournal } from './journal.js';

/** The held deploy lock of a root. */
export interface DeployLock {
  release(): Promise<void>;
}

/**
 * Takes the deploy lock of `root` (`.prefork/deploy.lock`, by proper-lockfile: an atomic mkdir,
 * refreshed every second, stale after 5 s). The lock of a deploy whose journal says it was
 * running but whose process is gone (killed) is broken at once. `waitMs` > 0 waits that long
 * for it. Throws a {@link PreforkError} with exit code 4 when another deploy holds it.
 */
export async function takeDeployLock(root: string, waitMs = 0): Promise<DeployLock> {
  const dir = ensureStateDir(root);
  const lockfilePath = join(dir, LOCK_FILE);
  // A deploy that was killed leaves its lock until it goes stale; its journal says it is dead.
  const journal = readJournal(root);
  if (journal?.outcome === 'running' && !isAlive(journal.pid)) {
    await lockfile.unlock(dir, { lockfilePath, realpath: false }).catch(() => {});
  }
  try {
    const release = await lockfile.lock(dir, {
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
    return { release };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ELOCKED') {
      throw new PreforkError(
        `another deploy or rollback holds the lock (${join(dir, LOCK_FILE)}): wait for it to finish, or see "prefork status"`,
        EXIT.locked,
        { cause: error },
      );
    }
    throw error;
  }
}
