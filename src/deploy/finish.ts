import { existsSync } from 'node:fs';
import { controlRequest, controlSocketPath, queryMaster } from '../control/client.js';
import { EXIT, messageOf, PreforkError } from '../errors/index.js';
import { appendHistory, countOutcome, journalStep, writeJournal } from '../journal/journal.js';
import { isAlive } from '../process/alive.js';
import { masterStopPlan, stopProcess } from '../process/stop.js';
import { oldbinPath } from '../protocol/files.js';
import { movesSince } from '../protocol/moves.js';
import { describeClosedAtDeadline, describeDrained } from '../report/connections.js';
import { takeExitReport } from '../state/exit-report.js';
import { PIDFILE_SETTLE_MS } from '../wait/timeouts.js';
import { poll } from '../wait/wait.js';
import { type DeployContext, newPidOf, step } from './context.js';
import { describeState } from './undo-upgrade.js';

/**
 * The last step and the record: QUIT the old master (TERM, then KILL, lose nothing: WINCH
 * drained its workers already), wait for its `.oldbin` to go, end canary mode on the new
 * master, and record the deploy in the history and the outcome counts.
 */
export async function finish(ctx: DeployContext): Promise<void> {
  const { config, old } = ctx;
  const newPid = newPidOf(ctx);
  await step(ctx, 'quit-old', `QUIT old master ${old.pid}`, async () => {
    // Its workers drain by its own graceful timeout, whatever this command's setting says.
    const graceS = old.gracefulTimeout ?? config.gracefulTimeout;
    const stoppedBy = await stopProcess(old.pid, masterStopPlan(graceS), {
      onEscalate: (next) =>
        ctx.reporter.info(`old master ${old.pid} still running: sending ${next.signal}`),
    });
    if (stoppedBy === undefined) {
      throw new PreforkError(
        `${ctx.release.name} serves (master ${newPid}), but the old master ${old.pid} survived QUIT, TERM and KILL: look at it (ps, /proc/${old.pid}/status)`,
        EXIT.rollbackIncomplete,
      );
    }
    // Not interruptible: the switch is done, only the old master's clean-up is awaited.
    const oldbin = oldbinPath(config.pid);
    await poll(
      () => (existsSync(oldbin) ? undefined : true),
      PIDFILE_SETTLE_MS,
      () => new Error(`${oldbin} was left behind`),
    );
  });
  // The new master may have died while the old one quit (a QUIT cannot be taken back): then
  // nothing serves, and the deploy must not say it is done.
  if (!isAlive(newPid)) await newMasterDiedAtQuit(ctx, newPid);
  reportDrain(ctx, old.pid);
  const serving = await queryMaster(config.root, newPid);
  ctx.preforkVersion = serving?.preforkVersion;
  if (serving?.canary === true) {
    // The new release is judged: its workers stop recording (unless metrics are on) and let
    // kept-alive clients stay.
    await controlRequest(controlSocketPath(config.root, newPid), {
      cmd: 'canary',
      on: false,
    }).catch((error: unknown) =>
      ctx.reporter.info(`cannot end canary mode on master ${newPid}: ${messageOf(error)}`),
    );
  }
  appendHistory(config.root, {
    release: ctx.release.name,
    version: ctx.release.version,
    previous: ctx.journal.previous,
    kind: ctx.journal.kind,
    preforkVersion: ctx.preforkVersion,
    node: serving?.node?.version,
    at: new Date().toISOString(),
  });
  ctx.journal.outcome = 'done';
  journalStep(config.root, ctx.journal, 'done');
  try {
    countOutcome(config.root, 'done');
  } catch (error) {
    // A counter for the dashboard: the deploy itself is done and recorded.
    ctx.reporter.info(`cannot count the deploy in .prefork/deploys.json: ${messageOf(error)}`);
  }
}

/** Records and reports a deploy whose new master died while its old master quit: exit 3. */
async function newMasterDiedAtQuit(ctx: DeployContext, newPid: number): Promise<never> {
  const { config, journal, old } = ctx;
  journal.error = `quit-old: the new master ${newPid} died while the old master ${old.pid} quit`;
  journal.outcome = 'rollback-incomplete';
  try {
    writeJournal(config.root, journal);
    countOutcome(config.root, 'rollback-incomplete');
  } catch (error) {
    ctx.reporter.info(`cannot write the deploy journal: ${messageOf(error)}`);
  }
  throw new PreforkError(
    `${ctx.release.name} failed at quit-old: the new master ${newPid} died (killed?) while the old master ${old.pid} quit, so no master serves now. State: ${await describeState(config)}. Start a master with the options the old one had: "prefork start" serves ${ctx.release.name} (current points at it), "prefork start releases/${old.release}" the previous release`,
    EXIT.rollbackIncomplete,
  );
}

/**
 * Tells what the old master's drains did with their connections (moved, closed, reset, ...)
 * and what they closed at the graceful timeout, from the report it left as it exited (none
 * when it was killed: then its connections died with it, uncounted).
 */
function reportDrain(ctx: DeployContext, pid: number): void {
  const report = takeExitReport(ctx.config.root, pid);
  if (report === undefined) return;
  // What it closed before this deploy began is not this deploy's.
  const closed = Math.max(0, report.closedAtDeadline - (ctx.old.closedAtDeadline ?? 0));
  if (report.drained !== undefined) {
    const counts = movesSince(report.drained, ctx.old.drained);
    const drained = describeDrained(counts);
    // With --json, the counts as a field of the event too (`drained`: moved, refused, ...).
    if (drained !== '')
      ctx.reporter.info(`old master ${pid}: its connections: ${drained}`, {
        oldMaster: pid,
        drained: counts,
      });
  }
  ctx.reporter.info(
    closed === 0
      ? `old master ${pid}: every connection finished before the graceful timeout`
      : `old master ${pid}: ${describeClosedAtDeadline(closed, report.gracefulTimeoutS)}`,
  );
}
