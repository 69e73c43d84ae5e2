import { queryMaster } from '../control/client.js';
import type { MasterStatus } from '../control/schema.js';
import { readPidfile } from '../state/pidfile.js';
import { sleep, throwIfAborted } from '../wait/wait.js';
import { checkHealthOnce, checkWorkers, type HealthTarget } from './health.js';

/** How long and how often {@link verifyNewMaster} checks. */
export interface VerifyPlan {
  /** Keep checking at least this long. */
  windowMs: number;
  /** ...and at least this many checks in a row. */
  inARow: number;
  /** Pause between checks. */
  everyMs: number;
  /**
   * Ask each of the new master's workers to check its own app too: needed while both
   * generations accept, when a check through the bind may be answered by either.
   */
  askWorkers: boolean;
  /** Check through the bind (when it has a TCP one). */
  throughBind: boolean;
}

/** The master being verified and how to reach it. */
export interface VerifyTarget {
  root: string;
  pid: number;
  /** Its release's name, for the error when its workers die. */
  release: string;
  /** `--health-path` (unset: `/`). */
  healthPath: string | undefined;
  /** Where to check through the bind; undefined without a TCP bind. */
  health: HealthTarget | undefined;
  /**
   * The old master, once WINCHed (the verify window): while any of its workers live, a check
   * through the bind that got no answer at all is not held against the new release (below).
   */
  oldPid?: number | undefined;
  /** The deploy's: aborted, verification ends with `Interrupted`. */
  signal?: AbortSignal | undefined;
}

/** True while the master with `pid` still has workers (draining ones included). */
async function hasWorkers(root: string, pid: number): Promise<boolean> {
  return ((await queryMaster(root, pid))?.workers.length ?? 0) > 0;
}

/** The pids of a master's workers, in a form two readings compare by. */
function workerSet(status: MasterStatus): string {
  return status.workers
    .map((w) => w.pid)
    .sort()
    .join(',');
}

/**
 * Health checks through the real bind and/or from each worker, plus the master alive with the
 * same workers throughout (a crash loop fails it), by `plan`. Throws what failed.
 */
export async function verifyNewMaster(target: VerifyTarget, plan: VerifyPlan): Promise<void> {
  const { root, pid, signal } = target;
  const first = await queryMaster(root, pid);
  if (first === undefined) throw new Error(`the new master ${pid} stopped answering`);
  const workers = workerSet(first);
  const deadline = Date.now() + plan.windowMs;
  let passed = 0;
  for (;;) {
    throwIfAborted(signal);
    const now = await queryMaster(root, pid);
    if (now === undefined) throw new Error(`the new master ${pid} exited`);
    if (workerSet(now) !== workers) {
      throw new Error(`workers of ${target.release} died during verification (crash loop?)`);
    }
    let problem = plan.askWorkers
      ? await checkWorkers(root, pid, target.healthPath, {
          // The new master's own --timeout (it may differ from this command's configuration).
          heartbeatTimeoutS: first.heartbeatTimeout,
        })
      : undefined;
    const bind =
      problem === undefined && plan.throughBind && target.health
        ? await checkHealthOnce(target.health)
        : undefined;
    // A draining worker of the old release still holds the sockets: a server may accept for a
    // moment after its stop signal, then close what it accepted unread (Uvicorn does: it polls
    // for the signal every 100 ms). A check that got no answer then may be the old release's,
    // so it passes nothing and fails nothing; once the old workers are gone, every check counts.
    // An answer (a 5xx, a wrong status) always counts.
    const unattributed =
      bind !== undefined &&
      !bind.answered &&
      target.oldPid !== undefined &&
      (await hasWorkers(root, target.oldPid));
    problem ??= unattributed ? undefined : bind?.problem;
    if (problem !== undefined) throw new Error(`health check failed: ${problem}`);
    if (!unattributed) passed += 1;
    if (passed >= plan.inARow && Date.now() >= deadline) return;
    await sleep(plan.everyMs, signal);
  }
}

/**
 * The new master's status once it runs with every worker ready and holds the pidfile;
 * undefined before. Throws when the old master says it exited (with why), or stops answering.
 */
export async function newMasterReady(
  root: string,
  pidfile: string,
  oldPid: number,
  newPid: number,
): Promise<MasterStatus | undefined> {
  const old = await queryMaster(root, oldPid);
  if (old === undefined) throw new Error(`the old master ${oldPid} stopped answering`);
  if (old.newMasterPid === null) {
    throw new Error(
      `the new master ${newPid} exited before it was ready${old.upgradeError ? `: ${old.upgradeError}` : ''}`,
    );
  }
  if (readPidfile(pidfile) !== newPid) return undefined;
  const status = await queryMaster(root, newPid);
  const ready = status?.workers.filter((w) => w.state === 'ready').length ?? 0;
  return status && status.state === 'running' && ready >= status.desiredWorkers
    ? status
    : undefined;
}
