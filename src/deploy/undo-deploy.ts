import { EXIT, messageOf, PreforkError } from '../errors/index.js';
import { countOutcome, journalStep, writeJournal } from '../journal/journal.js';
import type { DeployContext } from './context.js';
import { describeState, UndoIncomplete, undoUpgrade } from './undo-upgrade.js';

/** A step failed (or the deploy was interrupted): undo the upgrade and say what happened. */
export async function undoFailedDeploy(ctx: DeployContext, error: unknown): Promise<never> {
  const { config, journal, reporter } = ctx;
  const failedAt = journal.step;
  journal.error = `${failedAt}: ${messageOf(error)}`;
  // The journal is a record, not a precondition, once things must be undone.
  const record = (write: () => void) => {
    try {
      write();
    } catch (journalError) {
      reporter.info(`cannot write the deploy journal: ${messageOf(journalError)}`);
    }
  };
  record(() => journalStep(config.root, journal, 'rollback'));
  reporter.info(`${ctx.release.name} failed at ${failedAt}: ${messageOf(error)}; rolling back`);
  try {
    await undoUpgrade(
      config,
      {
        oldPid: ctx.old.pid,
        newPid: ctx.newPid,
        oldReleaseDir: ctx.old.releaseDir,
        oldWorkers: ctx.old.desiredWorkers,
      },
      reporter,
    );
  } catch (undoError) {
    journal.outcome = 'rollback-incomplete';
    record(() => writeJournal(config.root, journal));
    record(() => countOutcome(config.root, 'rollback-incomplete'));
    const state = await describeState(config);
    throw new PreforkError(
      `${ctx.release.name} failed at ${failedAt} (${messageOf(error)}) and the rollback did not complete: ${messageOf(undoError)}. State: ${state}. Look at the masters' logs, then run "prefork rollback" or signal them by hand (docs/upgrade.md)`,
      EXIT.rollbackIncomplete,
      { cause: undoError instanceof UndoIncomplete ? undoError : error },
    );
  }
  journal.outcome = 'rolled-back';
  record(() => writeJournal(config.root, journal));
  record(() => countOutcome(config.root, 'rolled-back'));
  throw new PreforkError(
    `${ctx.release.name} failed at ${failedAt}: ${messageOf(error)}. Rolled back: ${ctx.old.release} serves again (master ${ctx.old.pid})`,
    EXIT.failedRolledBack,
    { cause: error },
  );
}
