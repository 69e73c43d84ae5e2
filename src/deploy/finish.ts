import { existsSync } from 'node:fs';
import { controlRequest, controlSocketPath, queryMaster } from '../control/client.js';
import { EXIT, messageOf, PreforkError } from '../errors/index.js';
import { appendHistory, countOutcome, journalStep } from '../journal/journal.js';
import { masterStopPlan, stopProcess } from '../process/stop.js';
import { oldbinPath } from '../protocol/files.js';
import { movesSince } from '../protocol/moves.js';
import { describeClosedAtDeadline, describeDrained } from '../report/connections.js';
import { takeExitReport } from '../state/exit-report.js';
import { PIDFILE_SETTLE_MS } from '../wait/timeouts.js';
import { poll } from '../wait/wait.js';
import { type DeployContext, newPidOf, step } from './context.js';

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
