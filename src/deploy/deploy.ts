import { runCanary } from '../canary/canary-loop.js';
import { resolveSteps } from '../canary/steps.js';
import type { Config } from '../config/schema.js';
import { controlRequest, controlSocketPath, findMaster, queryMaster } from '../control/client.js';
import type { MasterStatus } from '../control/schema.js';
import { EXIT, messageOf, PreforkError, UsageError } from '../errors/index.js';
import { type DeployKind, type Journal, journalStep, writeJournal } from '../journal/journal.js';
import { type DeployLock, takeDeployLock } from '../journal/lock.js';
import { healthTarget } from '../probes/health.js';
import { newMasterReady, type VerifyPlan, verifyNewMaster } from '../probes/verify.js';
import { setWorkerCount } from '../probes/worker-count.js';
import { isAlive, sendSignal } from '../process/alive.js';
import { checkNode } from '../process/node-binary.js';
import { checkSyntax } from '../release/check-syntax.js';
import { pointCurrent } from '../release/current-link.js';
import { readReleaseInRoot } from '../release/read-release.js';
import { currentReleaseName } from '../release/release-names.js';
import type { Reporter } from '../report/reporter.js';
import { readPidfilePair } from '../state/pidfile.js';
import { NEW_MASTER_SPAWN_MS, WINCH_ACK_MS } from '../wait/timeouts.js';
import { poll, sleep } from '../wait/wait.js';
import { assertWorkersCanRead } from '../worker-kind/worker-access.js';
import { type DeployContext, newPidOf, step } from './context.js';
import { finish } from './finish.js';
import { undoFailedDeploy } from './undo-deploy.js';
import { describeState } from './undo-upgrade.js';

/** What a deploy needs: the configuration, the release to deploy, how to report. */
export interface DeployRequest {
  config: Config;
  /** As typed: `./releases/v2`, `releases/v2` or `v2`. */
  release: string;
  reporter: Reporter;
  kind: DeployKind;
  /** `--canary`: move traffic in steps, each judged against the old release (docs/canary.md). */
  canary?: boolean;
  /**
   * The deploy lock, already held by the caller (`rollback` decides under it and hands it on,
   * so no other deploy slips in between); released when the deploy ends. Taken here otherwise.
   */
  lock?: DeployLock | undefined;
}

/** Health checks in a row the new release must pass before the old workers stop. */
const HEALTHY_IN_A_ROW = 3;
/** Pause between the checks of `verify`, while both generations accept. */
const VERIFY_EVERY_MS = 50;
/** Pause between the checks of the verify window, after WINCH. */
const VERIFY_WINDOW_EVERY_MS = 200;

/** Refuses to start while another upgrade is in flight (an old master still holds `.oldbin`). */
async function assertNoUpgradeInFlight(config: Config, master: MasterStatus): Promise<void> {
  const oldbin = readPidfilePair(config.pid).find((p) => p.role === 'oldbin')?.pid;
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

/**
 * Verifies the new master (`probes/verify.ts`) within this deploy; `oldPid`: the old master,
 * WINCHed, whose draining workers may still hold the sockets.
 */
function verify(ctx: DeployContext, plan: VerifyPlan, oldPid?: number): Promise<void> {
  return verifyNewMaster(
    {
      root: ctx.config.root,
      pid: newPidOf(ctx),
      release: ctx.release.name,
      healthPath: ctx.config.healthPath,
      health: ctx.health,
      oldPid,
      signal: ctx.signal,
    },
    plan,
  );
}

/** USR2, or for a canary the control request `upgrade` with the first step's worker count. */
async function startNewMaster(
  ctx: DeployContext,
  canaryWorkers: number | undefined,
): Promise<void> {
  const { config, old, signal } = ctx;
  if (canaryWorkers === undefined) {
    if (!sendSignal(old.pid, 'SIGUSR2')) throw new Error(`master ${old.pid} is gone`);
    ctx.newPid = await poll(
      async () => (await queryMaster(config.root, old.pid))?.newMasterPid ?? undefined,
      NEW_MASTER_SPAWN_MS,
      () => new Error(`master ${old.pid} did not start a new master (see its log)`),
      { signal },
    );
  } else {
    // USR2 cannot carry the first step's worker count: the control socket can.
    const socket = controlSocketPath(config.root, old.pid);
    await controlRequest(socket, { cmd: 'canary', on: true });
    const started = await controlRequest(socket, { cmd: 'upgrade', workers: canaryWorkers });
    ctx.newPid = started.newMasterPid;
  }
  ctx.journal.newPid = ctx.newPid;
  writeJournal(config.root, ctx.journal);
}

/**
 * The switch, step by step (docs/deploy.md): activate, USR2, wait ready, verify, the canary
 * steps, retire the old workers, WINCH old, verify alone.
 */
async function upgrade(ctx: DeployContext): Promise<void> {
  const { config, release, old, signal } = ctx;
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
    () => startNewMaster(ctx, first),
  );
  const newPid = newPidOf(ctx);
  await step(ctx, 'wait-ready', `wait for new master ${newPid} and its workers`, async () => {
    const status = await poll(
      () => newMasterReady(config.root, config.pid, old.pid, newPid),
      config.readyTimeout * 1000,
      () =>
        new Error(
          `the new master ${newPid} was not ready within --ready-timeout ${config.readyTimeout} s`,
        ),
      { signal },
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
  if (ctx.canarySteps !== undefined) {
    ctx.journal.canary = [];
    await runCanary({
      config,
      steps: ctx.canarySteps,
      newSide: { pid: newPid, release: release.name },
      oldSide: { pid: old.pid, release: old.release, workers: old.desiredWorkers },
      health: ctx.health,
      signal,
      step: (id, title, run) => step(ctx, id, title, run),
      info: (message, fields) => ctx.reporter.info(message, fields),
      record: (judged) => {
        ctx.journal.canary?.push(judged);
        writeJournal(config.root, ctx.journal);
      },
    });
  }
  const oldStatus = await queryMaster(config.root, old.pid);
  const retiring = oldStatus?.desiredWorkers ?? 1;
  // HTTP/2 and gRPC clients an old worker's drain tells GOAWAY reconnect, some to an old worker
  // still accepting, whose drain tells them again: a call refused by both has used its one
  // transparent retry (gRPC A6) and fails. Their old workers stop all at once, at WINCH.
  const sessions = oldStatus?.workers.some((w) => w.http !== 'http/1.1') ?? false;
  // An old master that dies from here on (killed) leaves the switch made: only the new release
  // accepts, as after WINCH. The deploy goes on to verify it alone (its orphaned workers finish
  // and leave; the connections they were moving died with it or moved). WINCH says so.
  if (config.retireWindow > 0 && retiring > 1 && !sessions) {
    await step(
      ctx,
      'retire-old',
      `retire old master ${old.pid}'s workers one at a time over ${config.retireWindow} s`,
      () =>
        retireOldWorkers(ctx, retiring).catch((error: unknown) => {
          if (isAlive(old.pid)) throw error;
        }),
    );
  }
  await step(
    ctx,
    'winch',
    `WINCH old master ${old.pid}: only ${release.name} accepts`,
    async () => {
      if (!isAlive(old.pid) || !sendSignal(old.pid, 'SIGWINCH')) {
        ctx.reporter.info(`old master ${old.pid} is gone (killed?): only ${release.name} accepts`);
        return;
      }
      await poll(
        async () =>
          (await queryMaster(config.root, old.pid))?.workersStopped || !isAlive(old.pid)
            ? true
            : undefined,
        WINCH_ACK_MS,
        () =>
          new Error(
            `old master ${old.pid} did not stop its workers (is it in the foreground of a terminal? set forceWinch)`,
          ),
        { signal },
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
      verify(
        ctx,
        {
          windowMs: config.verifyWindow * 1000,
          inARow: 1,
          everyMs: VERIFY_WINDOW_EVERY_MS,
          askWorkers: node && ctx.health === undefined,
          throughBind: true,
        },
        old.pid,
      ),
  );
}

/**
 * Before WINCH, the old workers stop one at a time (TTOU), evenly over `--retire-window`, so
 * kept-alive clients move to the new workers a share at a time, each share to workers the
 * last one warmed up, instead of all at once at WINCH (docs/deploy.md: the p99 of a deploy).
 * WINCH stops the last one.
 */
async function retireOldWorkers(ctx: DeployContext, workers: number): Promise<void> {
  const { root, retireWindow } = ctx.config;
  const pause = (retireWindow * 1000) / workers;
  for (let count = workers - 1; count >= 1; count -= 1) {
    await setWorkerCount(root, ctx.old.pid, count, { signal: ctx.signal });
    await sleep(pause, ctx.signal);
  }
}

/** Reads and checks the release, as `install` does, before anything is locked or changed. */
async function preflight(request: DeployRequest) {
  const { config } = request;
  return request.reporter.step('preflight', `preflight: ${request.release}`, async () => {
    // The new master runs on `node` when it is set: it must run, and satisfy the release.
    const nodeVersion = config.node === undefined ? process.version : checkNode(config.node);
    const release = readReleaseInRoot(config.root, request.release, nodeVersion);
    checkSyntax(release);
    return release;
  });
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
  let lock = request.lock;
  const interrupt = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (!interrupt.signal.aborted) reporter.info(`${sig}: rolling back, please wait`);
    interrupt.abort(sig);
  };
  try {
    const release = await preflight(request);
    lock ??= await takeDeployLock(config.root);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
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
    const ctx: DeployContext = {
      config,
      release,
      old,
      journal,
      reporter,
      newPid: undefined,
      health: undefined,
      canarySteps,
      signal: interrupt.signal,
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
      // The last look before the old master is told to quit, which cannot be taken back.
      const newPid = newPidOf(ctx);
      if (!isAlive(newPid)) throw new Error(`the new master ${newPid} is gone (killed?)`);
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
    await lock?.release().catch(() => {});
  }
}
