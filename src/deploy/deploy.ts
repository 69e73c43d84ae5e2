import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import type { Config } from '../config/schema.js';
import { findMaster, queryMaster } from '../control/client.js';
import { EXIT, messageOf, PreforkError, UsageError } from '../errors/index.js';
import { assertWorkersCanRead } from '../master/worker-access.js';
import { checkNode } from '../process/node-binary.js';
import { masterStopPlan, stopProcess } from '../process/stop.js';
import { type MasterStatus, OLDBIN_SUFFIX } from '../protocol/index.js';
import { pointCurrent, readCurrentTarget } from '../release/current-link.js';
import { type Release, readReleaseInRoot } from '../release/read-release.js';
import { readPidfile } from '../state/pidfile.js';
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
import {
  NEW_MASTER_SPAWN_MS,
  PIDFILE_SETTLE_MS,
  SYNTAX_CHECK_MS,
  WINCH_ACK_MS,
} from './timeouts.js';
import { describeState, UndoIncomplete, undoUpgrade } from './undo-upgrade.js';
import { Interrupted, interruption, poll, sleep } from './wait.js';

/** What a deploy needs: the configuration, the release to deploy, how to report. */
export interface DeployRequest {
  config: Config;
  /** As typed: `./releases/v2`, `releases/v2` or `v2`. */
  release: string;
  reporter: Reporter;
  kind: DeployKind;
}

/** Health checks in a row the new release must pass before the old workers stop. */
const HEALTHY_IN_A_ROW = 3;
/** Pause between the checks of `verify`, while both generations accept. */
const VERIFY_EVERY_MS = 50;
/** Pause between the checks of the verify window, after WINCH. */
const VERIFY_WINDOW_EVERY_MS = 200;

/**
 * Checks that a Node release's entry module parses (`node --check`), without running it. An
 * exec release's command was checked (exists, executable) when it was read.
 */
function checkSyntax(release: Release): void {
  if (release.kind !== 'node') return;
  const result = spawnSync(process.execPath, ['--check', release.entry], {
    encoding: 'utf8',
    timeout: SYNTAX_CHECK_MS,
  });
  if (result.status !== 0) {
    const lines = (result.stderr ?? '').split('\n').filter((l) => l.trim() !== '');
    const error = lines.find((l) => /Error/.test(l)) ?? lines[lines.length - 1] ?? 'does not parse';
    const where = lines[0]?.startsWith(release.entry) ? ` (${lines[0]})` : '';
    throw new UsageError(
      `release ${release.name}: ${release.entry} does not parse${where}: ${error.trim()}`,
    );
  }
}

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
  await step(
    ctx,
    'usr2',
    `USR2 master ${old.pid}: start a new master on ${release.name}`,
    async () => {
      process.kill(old.pid, 'SIGUSR2');
      ctx.newPid = await poll(
        async () => (await queryMaster(config.root, old.pid))?.newMasterPid ?? undefined,
        NEW_MASTER_SPAWN_MS,
        () => new Error(`master ${old.pid} did not start a new master (see its log)`),
      );
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
    // The new master would refuse the release at its start (exit 1): say so now, nothing changed.
    if (old.workerIdentity !== null && process.getuid?.() === 0) {
      const { uid, gid } = old.workerIdentity;
      assertWorkersCanRead(
        old.workerIdentity,
        release,
        `the workers' user (uid ${uid}, gid ${gid})`,
      );
    }
    const previousTarget = readCurrentTarget(config.root);
    const journal: Journal = {
      kind: request.kind,
      release: release.name,
      releaseDir: release.dir,
      version: release.version,
      previous: previousTarget === undefined ? undefined : basename(previousTarget),
      oldPid: old.pid,
      newPid: undefined,
      step: 'preflight',
      outcome: 'running',
      error: undefined,
      pid: process.pid,
      startedAt: new Date(started).toISOString(),
      steps: [],
    };
    ctx = { config, release, old, journal, reporter, newPid: undefined, health: undefined };
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
      { oldPid: ctx.old.pid, newPid: ctx.newPid, oldReleaseDir: ctx.old.releaseDir },
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
