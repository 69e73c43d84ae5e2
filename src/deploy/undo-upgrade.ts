import { existsSync, unlinkSync } from 'node:fs';
import type { Config } from '../config/schema.js';
import { controlRequest, controlSocketPath, queryMaster } from '../control/client.js';
import { checkHealth, healthTarget } from '../probes/health.js';
import { setWorkerCount } from '../probes/worker-count.js';
import { isAlive, sendSignal } from '../process/alive.js';
import { masterStopPlan, stopProcess } from '../process/stop.js';
import { oldbinPath } from '../protocol/files.js';
import { pointCurrent, readCurrentTarget } from '../release/current-link.js';
import type { Reporter } from '../report/reporter.js';
import { readPidfile, readPidfilePair } from '../state/pidfile.js';
import { OLD_MASTER_HEALTHY_MS, PIDFILE_SETTLE_MS } from '../wait/timeouts.js';
import { poll } from '../wait/wait.js';

/** The two masters of an upgrade to undo. */
export interface UpgradeInFlight {
  oldPid: number;
  /** The new master, when one was started (and is known). */
  newPid: number | undefined;
  /** Real path of the old master's release: `current` goes back to it. */
  oldReleaseDir: string;
  /**
   * The old master's worker count before the deploy (a canary step or the retiring of old
   * workers lowered it with TTOU): brought back with TTIN. Unknown for deploys journaled
   * before it was recorded: the count is left as it is.
   */
  oldWorkers?: number | undefined;
}

/** Why an undo could not complete, with the state things were left in. */
export class UndoIncomplete extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UndoIncomplete';
  }
}

/**
 * Undoes an upgrade as docs/upgrade.md (3b) does by hand, each wait with a timeout and each timeout an action:
 * `current` back to the old release; the old master back to its worker count (TTIN) and out of
 * canary mode; HUP it if its workers were stopped, until they are ready again; QUIT the new master, TERM it after the graceful timeout, KILL as a last
 * resort; then check that the old master holds `prefork.pid` alone and answers health checks.
 * Throws {@link UndoIncomplete} when the old master cannot be brought back.
 */
export async function undoUpgrade(
  config: Config,
  upgrade: UpgradeInFlight,
  reporter: Reporter,
): Promise<void> {
  const { oldPid, newPid } = upgrade;
  // No signal: an undo is not interrupted, whatever the deploy was told.
  const options = {};
  // The new master was started with the old one's settings: its workers drain by the old
  // master's graceful timeout (as it reports it), whatever this command's setting says.
  let graceS = config.gracefulTimeout;
  await reporter.step('restore-current', 'point current back at the old release', async () => {
    pointCurrent(config.root, upgrade.oldReleaseDir);
  });
  if (!isAlive(oldPid)) {
    throw new UndoIncomplete(`the old master ${oldPid} is gone, so there is nothing to go back to`);
  }
  await reporter.step(
    'hup-old',
    `old master ${oldPid}: all its workers serving (TTIN to its full count, HUP if WINCH stopped them)`,
    async () => {
      let status = await queryMaster(config.root, oldPid);
      if (status === undefined) throw new UndoIncomplete(`old master ${oldPid} does not answer`);
      graceS = status.gracefulTimeout ?? graceS;
      if (status.canary === true) {
        await controlRequest(controlSocketPath(config.root, oldPid), { cmd: 'canary', on: false });
      }
      if (upgrade.oldWorkers !== undefined && status.desiredWorkers < upgrade.oldWorkers) {
        await setWorkerCount(config.root, oldPid, upgrade.oldWorkers, options);
        status = (await queryMaster(config.root, oldPid)) ?? status;
      }
      const accepting = status.workers.filter((w) => w.state !== 'draining').length;
      if (status.workersStopped || accepting < status.desiredWorkers) sendSignal(oldPid, 'SIGHUP');
      await poll(
        async () => {
          const now = await queryMaster(config.root, oldPid);
          const ready = now?.workers.filter((w) => w.state === 'ready').length ?? 0;
          return now && !now.workersStopped && ready >= now.desiredWorkers ? true : undefined;
        },
        config.readyTimeout * 1000,
        () =>
          new UndoIncomplete(
            `old master ${oldPid}'s workers were not ready within ${config.readyTimeout} s`,
          ),
        options,
      );
    },
  );
  if (newPid !== undefined && isAlive(newPid)) {
    await reporter.step(
      'stop-new',
      `QUIT new master ${newPid} (TERM, then KILL, if it lingers)`,
      async () => {
        const stoppedBy = await stopProcess(newPid, masterStopPlan(graceS), {
          onEscalate: (next, previous) =>
            reporter.info(
              `new master ${newPid} still running after ${previous.signal.slice(3)}: sending ${next.signal.slice(3)}`,
            ),
        });
        if (stoppedBy === undefined) throw new UndoIncomplete(`new master ${newPid} survived KILL`);
      },
    );
  }
  await reporter.step('check-old', `check old master ${oldPid} serves alone`, async () => {
    const oldbin = oldbinPath(config.pid);
    await poll(
      () => (readPidfile(config.pid) === oldPid && !existsSync(oldbin) ? true : undefined),
      PIDFILE_SETTLE_MS,
      () => new UndoIncomplete(`old master ${oldPid} did not take ${config.pid} back`),
      options,
    ).catch(async (error) => {
      // A killed new master may have left its pidfile; the old master restores it on the new
      // one's exit, so only a leftover .oldbin of our own old master is cleaned up here.
      if (readPidfile(oldbin) === oldPid && readPidfile(config.pid) === oldPid) unlinkSync(oldbin);
      else throw error;
    });
    const first = await queryMaster(config.root, oldPid);
    if (first && healthTarget(first, config.healthPath)) {
      let problem: string | undefined;
      await poll(
        async () => {
          // Asked each time: whether the check speaks TLS comes from the ready workers.
          const status = await queryMaster(config.root, oldPid);
          const target = status && healthTarget(status, config.healthPath);
          problem = target ? await checkHealth(target) : 'its control socket did not answer';
          return problem === undefined ? true : undefined;
        },
        OLD_MASTER_HEALTHY_MS,
        () => new UndoIncomplete(`old master ${oldPid} is not healthy: ${problem}`),
        { everyMs: 200 },
      );
    }
  });
}

/** What `status`-like facts say about a root, for messages of an incomplete rollback. */
export async function describeState(config: Config): Promise<string> {
  const parts: string[] = [];
  for (const { path: file, pid } of readPidfilePair(config.pid)) {
    if (pid === undefined) continue;
    const status = await queryMaster(config.root, pid).catch(() => undefined);
    parts.push(
      status
        ? `${file}: master ${pid} on ${status.release} with ${status.workers.length} workers${status.workersStopped ? ' (stopped by WINCH)' : ''}`
        : `${file}: pid ${pid} (${isAlive(pid) ? 'not answering' : 'dead'})`,
    );
  }
  parts.push(`current -> ${readCurrentTarget(config.root) ?? '(none)'}`);
  return parts.join('; ');
}
