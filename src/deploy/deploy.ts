import { existsSync } from 'node:fs';
import { resolveSteps } from '../canary/steps.js';
import { describeSide } from '../canary/verdict.js';
import { observeStep } from '../canary/window.js';
import type { Config } from '../config/schema.js';
import { controlRequest, controlSocketPath, findMaster, queryMaster } from '../control/client.js';
import type { MasterStatus } from '../control/schema.js';
import { EXIT, messageOf, PreforkError, UsageError } from '../errors/index.js';
import { checkNode } from '../process/node-binary.js';
import { masterStopPlan, stopProcess } from '../process/stop.js';
import { OLDBIN_SUFFIX } from '../protocol/files.js';
import { checkSyntax } from '../release/check-syntax.js';
import { pointCurrent } from '../release/current-link.js';
import { type Release, readReleaseInRoot } from '../release/read-release.js';
import { currentReleaseName } from '../release/release-names.js';
import { readPidfile } from '../state/pidfile.js';
import { assertWorkersCanRead } from '../worker-kind/worker-access.js';
import { checkHealth, checkWorkers, type HealthTarget, healthTarget } from './health.js';
import {
  appendHistory,
  countOutcome,
  type DeployKind,
  type Journal,
  type JournalStep,
  journalStep,
  writeJournal,
} from './journal.js';
import { takeDeployLock } from './lock.js';
import type { Reporter } from './reporter.js';
import { NEW_MASTER_SPAWN_MS, PIDFILE_SETTLE_MS, WINCH_ACK_MS } from './timeouts.js';
import { describeState, UndoIncomplete, undoUpgrade } from './undo-upgrade.js';
import { Interrupted, interruption, poll, sleep } from './wait.js';
import { setWorkerCount, waitReadyWorkers } from './worker-count.js';

/** What a deploy needs: the configuration, the release to deploy, how to report. */
export interface DeployRequest {
  config: Config;
  /** As typed: `./releases/v2`, `releases/v2` or `v2`. */
  release: string;
  reporter: Reporter;
  kind: DeployKind;
  /** `--canary`: move traffic in steps, each judged against the old release (docs/canary.md). */
  canary?: boolean;
}

/** Health checks in a row the new release must pass before the old workers stop. */
const HEALTHY_IN_A_ROW = 3;
/** Pause between the checks of `verify`, while both generations accept. */
const VERIFY_EVERY_MS = 50;
/** Pause between the checks of the verify window, after WINCH. */
const VERIFY_WINDOW_EVERY_MS = 200;

/** Refuses to start while another upgrade is in flight (an old master still holds `.oldbin`). */
async function assertNoUpgradeInFlight(config: Config, master: MasterStatus): Promise<void> {
  const oldbin = readPidfile(config.pid + OLDBIN_SUFFIX);
  const oldMaster = oldbin === undefined ? undefined : await queryMaster(config.root, oldbin);
  if (master.newMasterPid !== null || master.oldMasterPid !== null || oldMaster !== undefined) {
    throw new UsageError(
      'an upgrade is already in flight (two masters run): finish or undo it with "prefork rollback" first',
    );
  }
}

/**
 * The new release's worker count at each canary step, resolved against the old master's count;
 * refused (exit 2, nothing changed) when the serving master cannot run a canary.
 */
function canaryPlan(config: Config, old: MasterStatus): number[] {
  if (old.canary === undefined) {
    throw new UsageError(
      `the serving master ${old.pid} runs prefork ${old.preforkVersion ?? '(older)'}, which predates canary deploys: run "prefork upgrade" first, then deploy with --canary`,
    );
  }
  if (old.workersStopped) {
    throw new UsageError(
      `the serving master ${old.pid} has its workers stopped (WINCH): nothing to compare a canary against; HUP it first`,
    );
  }
  return resolveSteps(config.canarySteps, old.desiredWorkers);
}

/** The state a deploy carries from step to step. */
interface Context {
  config: Config;
  release: Release;
  old: MasterStatus;
  journal: Journal;
  reporter: Reporter;
  newPid: number | undefined;
  health: HealthTarget | undefined;
  /** The prefork version the new master reports, once it serves alone. */
  preforkVersion?: string | undefined;
  /** A canary deploy: the new release's worker count at each step. */
  canarySteps: number[] | undefined;
}

async function step(
  ctx: Context,
  id: JournalStep & string,
  title: string,
  run: () => Promise<void>,
): Promise<void> {
  journalStep(ctx.config.root, ctx.journal, id);
  await ctx.reporter.step(id, title, run);
}

/** The new master's status once it runs with every worker ready; undefined before. */
async function newMasterReady(ctx: Context): Promise<MasterStatus | undefined> {
  const old = await queryMaster(ctx.config.root, ctx.old.pid);
  if (old === undefined) throw new Error(`the old master ${ctx.old.pid} stopped answering`);
  if (old.newMasterPid === null) {
    throw new Error(
      `the new master ${ctx.newPid} exited before it was ready${old.upgradeError ? `: ${old.upgradeError}` : ''}`,
    );
  }
  if (readPidfile(ctx.config.pid) !== ctx.newPid) return undefined;
  const status = await queryMaster(ctx.config.root, ctx.newPid as number);
  const ready = status?.workers.filter((w) => w.state === 'ready').length ?? 0;
  return status && status.state === 'running' && ready >= status.desiredWorkers
    ? status
    : undefined;
}

/** How long and how often {@link verify} checks. */
interface VerifyPlan {
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

/** Health checks through the real bind, plus the new master alive with the same workers. */
async function verify(ctx: Context, plan: VerifyPlan): Promise<void> {
  const { windowMs, inARow, everyMs, askWorkers, throughBind } = plan;
  const first = await queryMaster(ctx.config.root, ctx.newPid as number);
  if (first === undefined) throw new Error(`the new master ${ctx.newPid} stopped answering`);
  const workers = first.workers
    .map((w) => w.pid)
    .sort()
    .join(',');
  const deadline = Date.now() + windowMs;
  let passed = 0;
  for (;;) {
    if (interruption.signal) throw new Interrupted(interruption.signal);
    const now = await queryMaster(ctx.config.root, ctx.newPid as number);
    if (now === undefined) throw new Error(`the new master ${ctx.newPid} exited`);
    if (
      now.workers
        .map((w) => w.pid)
        .sort()
        .join(',') !== workers
    ) {
      throw new Error(`workers of ${ctx.release.name} died during verification (crash loop?)`);
    }
    let problem = askWorkers
      ? await checkWorkers(ctx.config.root, ctx.newPid as number, ctx.config.healthPath, {
          // The new master's own --timeout (it may differ from this command's configuration).
          heartbeatTimeoutS: first.heartbeatTimeout,
        })
      : undefined;
    problem ??= throughBind && ctx.health ? await checkHealth(ctx.health) : undefined;
    if (problem !== undefined) throw new Error(`health check failed: ${problem}`);
    passed += 1;
    if (passed >= inARow && Date.now() >= deadline) return;
    await sleep(everyMs);
  }
}

async function upgrade(ctx: Context): Promise<void> {
  const { config, release, old } = ctx;
  // `prefork upgrade` replaces the masters on the release they run: `current` stays as it is.
  if (ctx.journal.kind !== 'upgrade') {
    await step(ctx, 'activate', `point current at ${release.name}`, async () => {
      pointCurrent(config.root, release.dir);
    });
  }
  const first = ctx.canarySteps?.[0];
  await step(
    ctx,
    'usr2',
    first === undefined
      ? `USR2 master ${old.pid}: start a new master on ${release.name}`
      : `USR2 master ${old.pid}: start a new master on ${release.name} with ${first} worker(s) beside the old ${old.desiredWorkers}`,
    async () => {
      if (first === undefined) {
        process.kill(old.pid, 'SIGUSR2');
        ctx.newPid = await poll(
          async () => (await queryMaster(config.root, old.pid))?.newMasterPid ?? undefined,
          NEW_MASTER_SPAWN_MS,
          () => new Error(`master ${old.pid} did not start a new master (see its log)`),
        );
      } else {
        // USR2 cannot carry the first step's worker count: the control socket can.
        const socket = controlSocketPath(config.root, old.pid);
        await controlRequest(socket, { cmd: 'canary', on: true });
        const started = await controlRequest(socket, {
          cmd: 'upgrade',
          workers: first,
        });
        ctx.newPid = started.newMasterPid;
      }
      ctx.journal.newPid = ctx.newPid;
      writeJournal(config.root, ctx.journal);
    },
  );
  await step(ctx, 'wait-ready', `wait for new master ${ctx.newPid} and its workers`, async () => {
    const status = await poll(
      () => newMasterReady(ctx),
      config.readyTimeout * 1000,
      () =>
        new Error(
          `the new master ${ctx.newPid} was not ready within --ready-timeout ${config.readyTimeout} s`,
        ),
    );
    ctx.health = healthTarget(status, config.healthPath);
  });
  // While both releases accept, only a Node release's workers can be asked one by one. An exec
  // release's workers have no channel for that: "verified" is every one of them ready (they
  // sent READY=1) and still the same processes over these rounds; its health check through the
  // bind waits for the verify window, when only it accepts.
  const node = release.kind === 'node';
  await step(ctx, 'verify', `check ${release.name} is healthy`, () =>
    verify(ctx, {
      windowMs: 0,
      inARow: HEALTHY_IN_A_ROW,
      everyMs: VERIFY_EVERY_MS,
      askWorkers: node,
      throughBind: node,
    }),
  );
  if (ctx.canarySteps !== undefined) await canary(ctx, ctx.canarySteps);
  const retiring = (await queryMaster(config.root, old.pid))?.desiredWorkers ?? 1;
  if (config.retireWindow > 0 && retiring > 1) {
    await step(
      ctx,
      'retire-old',
      `retire old master ${old.pid}'s workers one at a time over ${config.retireWindow} s`,
      () => retireOldWorkers(ctx, retiring),
    );
  }
  await step(
    ctx,
    'winch',
    `WINCH old master ${old.pid}: only ${release.name} accepts`,
    async () => {
      process.kill(old.pid, 'SIGWINCH');
      await poll(
        async () => {
          const status = await queryMaster(config.root, old.pid);
          return status?.workersStopped ? true : undefined;
        },
        WINCH_ACK_MS,
        () =>
          new Error(
            `old master ${old.pid} did not stop its workers (is it in the foreground of a terminal? set forceWinch)`,
          ),
      );
    },
  );
  await step(
    ctx,
    'verify-window',
    `verify ${release.name} alone for ${config.verifyWindow} s`,
    // Only the new release accepts now, so the bind reaches it; without a TCP bind to check
    // through (Unix sockets only), its workers are asked instead.
    () =>
      verify(ctx, {
        windowMs: config.verifyWindow * 1000,
        inARow: 1,
        everyMs: VERIFY_WINDOW_EVERY_MS,
        askWorkers: node && ctx.health === undefined,
        throughBind: true,
      }),
  );
}

/**
 * The canary steps (docs/canary.md): each judged over `--canary-window` against the old
 * release serving on the same sockets, capacity moved between them by TTIN to the new master
 * and TTOU to the old one; then the new master is brought to its full count.
 */
async function canary(ctx: Context, steps: number[]): Promise<void> {
  const { config, old, release } = ctx;
  const newPid = ctx.newPid as number;
  const full = old.desiredWorkers;
  const limits = {
    maxErrorRate: config.canaryMaxErrorRate,
    maxP99Ratio: config.canaryMaxP99Ratio,
    minRequests: config.canaryMinRequests,
  };
  ctx.journal.canary = [];
  for (const [i, workers] of steps.entries()) {
    const label = `canary step ${i + 1}/${steps.length}`;
    const oldWorkers = i === 0 ? full : Math.max(1, full - workers);
    if (i > 0) {
      await step(
        ctx,
        'canary',
        `${label}: move capacity: TTIN new master to ${workers}, TTOU old master to ${oldWorkers}`,
        async () => {
          // The new workers take traffic before the old ones stop: capacity never dips.
          await setWorkerCount(config.root, newPid, workers);
          await waitReadyWorkers(config.root, newPid, workers, config.readyTimeout * 1000);
          await setWorkerCount(config.root, old.pid, oldWorkers);
        },
      );
    }
    await step(
      ctx,
      'canary',
      `${label}: judge ${release.name} (${workers} worker(s)) against ${old.release} (${oldWorkers}) for ${config.canaryWindow} s`,
      async () => {
        const verdict = await observeStep({
          root: config.root,
          newSide: { pid: newPid, release: release.name },
          oldSide: { pid: old.pid, release: old.release },
          windowMs: config.canaryWindow * 1000,
          limits,
          health: ctx.health,
          onExtend: (short) =>
            ctx.reporter.info(
              `${label}: too little traffic (${short.reasons.join('; ')}): extending the window once by ${config.canaryWindow} s`,
              { event: 'canary-extend', step: i + 1, of: steps.length, ...short },
            ),
        });
        const record = { step: i + 1, of: steps.length, at: new Date().toISOString(), ...verdict };
        ctx.journal.canary?.push(record);
        writeJournal(config.root, ctx.journal);
        const line = `${label} ${verdict.verdict}: ${describeSide(verdict.new)}; ${describeSide(verdict.old)}`;
        ctx.reporter.info(
          verdict.reasons.length > 0 ? `${line} (${verdict.reasons.join('; ')})` : line,
          { event: 'canary', ...record },
        );
        if (verdict.verdict === 'no-data') {
          throw new Error(`${label}: no data: ${verdict.reasons.join('; ')}`);
        }
        if (verdict.verdict === 'fail') {
          throw new Error(`${label} failed: ${verdict.reasons.join('; ')}`);
        }
      },
    );
  }
  await step(ctx, 'full-count', `TTIN new master ${newPid} to its full count`, async () => {
    const status = await queryMaster(config.root, newPid);
    if (status === undefined) throw new Error(`the new master ${newPid} stopped answering`);
    const target = status.configuredWorkers ?? full;
    await setWorkerCount(config.root, newPid, target);
    await waitReadyWorkers(config.root, newPid, target, config.readyTimeout * 1000);
  });
}

/**
 * Before WINCH, the old workers stop one at a time (TTOU), evenly over `--retire-window`, so
 * kept-alive clients move to the new workers a share at a time, each share to workers the
 * last one warmed up, instead of all at once at WINCH (docs/deploy.md: the p99 of a deploy).
 * WINCH stops the last one.
 */
async function retireOldWorkers(ctx: Context, workers: number): Promise<void> {
  const { root, retireWindow } = ctx.config;
  const pause = (retireWindow * 1000) / workers;
  for (let count = workers - 1; count >= 1; count -= 1) {
    await setWorkerCount(root, ctx.old.pid, count);
    const until = Date.now() + pause;
    while (Date.now() < until) {
      if (interruption.signal) throw new Interrupted(interruption.signal);
      await sleep(Math.min(VERIFY_EVERY_MS, until - Date.now()));
    }
  }
}

async function finish(ctx: Context): Promise<void> {
  const { config, old } = ctx;
  await step(ctx, 'quit-old', `QUIT old master ${old.pid}`, async () => {
    // Its workers were drained by WINCH already: TERM, then KILL, lose nothing.
    const stoppedBy = await stopProcess(old.pid, masterStopPlan(config.gracefulTimeout), {
      onEscalate: (next) =>
        ctx.reporter.info(`old master ${old.pid} still running: sending ${next.signal}`),
    });
    if (stoppedBy === undefined) {
      throw new PreforkError(
        `${ctx.release.name} serves (master ${ctx.newPid}), but the old master ${old.pid} survived QUIT, TERM and KILL: look at it (ps, /proc/${old.pid}/status)`,
        EXIT.rollbackIncomplete,
      );
    }
    await poll(
      () => (existsSync(config.pid + OLDBIN_SUFFIX) ? undefined : true),
      PIDFILE_SETTLE_MS,
      () => new Error(`${config.pid}${OLDBIN_SUFFIX} was left behind`),
      { interruptible: false },
    );
  });
  const serving = await queryMaster(config.root, ctx.newPid as number);
  ctx.preforkVersion = serving?.preforkVersion;
  if (serving?.canary === true) {
    // The new release is judged: its workers stop recording (unless metrics are on) and let
    // kept-alive clients stay.
    await controlRequest(controlSocketPath(config.root, ctx.newPid as number), {
      cmd: 'canary',
      on: false,
    }).catch((error: unknown) =>
      ctx.reporter.info(`cannot end canary mode on master ${ctx.newPid}: ${messageOf(error)}`),
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
 * `prefork deploy <release>` (docs/deploy.md): preflight, lock, activate, USR2, wait ready, verify,
 * WINCH old, verify again, QUIT old, record — each step journaled before it is taken — and
 * the manual revert of docs/upgrade.md (3b) when any step fails or the deploy is interrupted. Failures throw a
 * {@link PreforkError} carrying the exit code: 1 failed and rolled back, 3 rollback
 * incomplete; 2 (a {@link UsageError}) from preflight and 4 for a held lock, both before
 * anything changed.
 */
export async function deploy(request: DeployRequest): Promise<void> {
  const { config, reporter } = request;
  const started = Date.now();
  let ctx: Context | undefined;
  const release = await reporter.step('preflight', `preflight: ${request.release}`, async () => {
    // The new master runs on `node` when it is set: it must run, and satisfy the release.
    const nodeVersion = config.node === undefined ? process.version : checkNode(config.node);
    const release = readReleaseInRoot(config.root, request.release, nodeVersion);
    checkSyntax(release);
    return release;
  });
  const unlock = await takeDeployLock(config.root);
  const onSignal = (sig: NodeJS.Signals) => {
    if (interruption.signal === undefined) reporter.info(`${sig}: rolling back, please wait`);
    interruption.signal = sig;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const old = await findMaster(config.root, config.pid);
    await assertNoUpgradeInFlight(config, old);
    const canarySteps = request.canary ? canaryPlan(config, old) : undefined;
    // The new master would refuse the release at its start (exit 1): say so now, nothing changed.
    if (old.workerIdentity !== null && process.getuid?.() === 0) {
      const { uid, gid } = old.workerIdentity;
      assertWorkersCanRead(
        old.workerIdentity,
        release,
        `the workers' user (uid ${uid}, gid ${gid})`,
      );
    }
    const journal: Journal = {
      kind: request.kind,
      release: release.name,
      releaseDir: release.dir,
      version: release.version,
      previous: currentReleaseName(config.root),
      oldPid: old.pid,
      newPid: undefined,
      oldWorkers: old.desiredWorkers,
      step: 'preflight',
      outcome: 'running',
      error: undefined,
      pid: process.pid,
      startedAt: new Date(started).toISOString(),
      steps: [],
    };
    ctx = {
      config,
      release,
      old,
      journal,
      reporter,
      newPid: undefined,
      health: undefined,
      canarySteps,
    };
    try {
      journalStep(config.root, journal, 'preflight');
    } catch (error) {
      throw new UsageError(
        `cannot write the deploy journal in ${config.root}/.prefork (${messageOf(error)}): free some space or fix its permissions; nothing was changed`,
        { cause: error },
      );
    }
    try {
      await upgrade(ctx);
    } catch (error) {
      await undoFailedDeploy(ctx, error);
    }
    try {
      await finish(ctx);
    } catch (error) {
      if (error instanceof PreforkError) throw error;
      throw new PreforkError(
        `${release.name} serves (master ${ctx.newPid}), but finishing the deploy failed: ${messageOf(error)}. State: ${await describeState(config)}`,
        EXIT.rollbackIncomplete,
        { cause: error },
      );
    }
    const done = { deploy: 'deployed', rollback: 'rolled back to', upgrade: 'upgraded' }[
      request.kind
    ];
    const prefork = request.kind === 'upgrade' ? ` on prefork ${ctx.preforkVersion ?? '?'}` : '';
    reporter.info(
      `${done} ${release.name} (${release.version})${prefork}: master ${ctx.newPid} serves, in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      {
        release: release.name,
        version: release.version,
        master: ctx.newPid,
        ...(ctx.preforkVersion === undefined ? {} : { preforkVersion: ctx.preforkVersion }),
        ms: Date.now() - started,
      },
    );
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await unlock().catch(() => {});
  }
}

/** A step failed (or the deploy was interrupted): undo the upgrade and say what happened. */
async function undoFailedDeploy(ctx: Context, error: unknown): Promise<never> {
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
