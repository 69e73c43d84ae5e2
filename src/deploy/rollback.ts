import { basename } from 'node:path';
import type { Config } from '../config/schema.js';
import { findMaster, queryMaster } from '../control/client.js';
import { EXIT, messageOf, PreforkError, UsageError } from '../errors/index.js';
import { readHistory, readJournal, writeJournal } from '../journal/journal.js';
import { takeDeployLock } from '../journal/lock.js';
import { oldbinPath } from '../protocol/files.js';
import { pointCurrent, readCurrentTarget } from '../release/current-link.js';
import type { Reporter } from '../report/reporter.js';
import { readPidfile } from '../state/pidfile.js';
import { deploy } from './deploy.js';
import { describeState, undoUpgrade } from './undo-upgrade.js';

/** How long `rollback` waits for the lock of a deploy that was killed (its lock goes stale). */
const LOCK_WAIT_MS = 8000;

/** Undoes an upgrade in flight (two masters run): the old one serves alone again. */
async function undoInFlight(config: Config, oldPid: number, reporter: Reporter): Promise<void> {
  const old = await queryMaster(config.root, oldPid);
  if (old === undefined) throw new UsageError(`old master ${oldPid} does not answer`);
  const newPid = old.newMasterPid ?? readPidfile(config.pid);
  reporter.info(
    `upgrade in flight: old master ${oldPid} (${old.release}), new master ${newPid ?? 'gone'}`,
  );
  const journal = readJournal(config.root);
  try {
    await undoUpgrade(
      config,
      {
        oldPid,
        newPid: newPid === oldPid ? undefined : newPid,
        oldReleaseDir: old.releaseDir,
        oldWorkers: journal?.oldPid === oldPid ? journal.oldWorkers : undefined,
      },
      reporter,
    );
  } catch (error) {
    throw new PreforkError(
      `the rollback did not complete: ${messageOf(error)}. State: ${await describeState(config)}`,
      EXIT.rollbackIncomplete,
      { cause: error },
    );
  }
  if (journal && journal.outcome !== 'done') {
    journal.outcome = 'rolled-back';
    writeJournal(config.root, journal);
  }
  reporter.info(`rolled back: ${old.release} serves (master ${oldPid})`);
}

/**
 * `prefork rollback` (docs/deploy.md): with an upgrade in flight (a killed deploy, or one done by hand),
 * undo it; after a deploy that was killed before it switched masters, point `current` back;
 * otherwise deploy the previous release from the history through the full deploy flow.
 */
export async function rollback(config: Config, reporter: Reporter): Promise<void> {
  const lock = await takeDeployLock(config.root, LOCK_WAIT_MS);
  // Handed to the redeploy below, which releases it: no other deploy can slip in between
  // deciding what to roll back to and doing it.
  let handedOn = false;
  try {
    const oldbinPid = readPidfile(oldbinPath(config.pid));
    if (oldbinPid !== undefined && (await queryMaster(config.root, oldbinPid))) {
      await undoInFlight(config, oldbinPid, reporter);
      return;
    }
    const master = await findMaster(config.root, config.pid);
    const journal = readJournal(config.root);
    const interrupted =
      journal && (journal.outcome === 'running' || journal.outcome === 'rollback-incomplete');
    if (interrupted && journal.previous === basename(master.releaseDir)) {
      // The deploy died before the new master took over: the old release still serves.
      if (readCurrentTarget(config.root) !== `releases/${journal.previous}`) {
        pointCurrent(config.root, master.releaseDir);
      }
      journal.outcome = 'rolled-back';
      writeJournal(config.root, journal);
      reporter.info(
        `the interrupted deploy of ${journal.release} never took over: ${master.release} serves, current points at it`,
      );
      return;
    }
    // An upgrade (of prefork or Node) kept the release: the release to go back to is the one
    // before the last deploy or rollback.
    const lastDeploy = readHistory(config.root)
      .filter((entry) => entry.kind !== 'upgrade')
      .at(-1);
    const target = interrupted ? journal.previous : lastDeploy?.previous;
    if (target === undefined) {
      throw new UsageError(
        'nothing to roll back to: no upgrade in flight and no previous release in the deploy history',
      );
    }
    reporter.info(`redeploying the previous release ${target}`);
    handedOn = true;
    await deploy({ config, release: target, reporter, kind: 'rollback', lock });
  } finally {
    if (!handedOn) await lock.release().catch(() => {});
  }
}
