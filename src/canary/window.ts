import { controlRequest, controlSocketPath } from '../control/client.js';
import { messageOf } from '../errors/index.js';
import { figuresSince, isFigures } from '../figures/figures.js';
import { checkHealth, type HealthTarget } from '../probes/health.js';
import type { WorkerExitReason } from '../protocol/exits.js';
import type { RequestFigures } from '../protocol/figures.js';
import { sleep, throwIfAborted } from '../wait/wait.js';
import {
  type CanaryLimits,
  earlyVerdict,
  judgeStep,
  type SideWindow,
  type StepVerdict,
} from './verdict.js';

/** Exits that count against a release: its code failed, not prefork's decision to stop it. */
const CRASH_REASONS: readonly WorkerExitReason[] = ['crashed', 'boot_failed', 'hung'];
/** How often a window looks for crashes (a crash fails the step at once). */
const LOOK_EVERY_MS = 250;
/** How often a window checks health through the bind, for a release whose requests are not counted. */
const HEALTH_EVERY_MS = 1000;

/** A master and the release of it being compared. */
export interface Side {
  pid: number;
  release: string;
}

/** One reading of a side's counters. */
interface Reading {
  figures: RequestFigures | undefined;
  crashes: number;
  workers: number;
  /** Counts its figures (a Node release, with the canary or metrics on). */
  counted: boolean;
}

async function read(root: string, side: Side): Promise<Reading> {
  const share = await controlRequest(controlSocketPath(root, side.pid), {
    cmd: 'metrics',
  }).catch((error: unknown) => {
    throw new Error(`master ${side.pid} (${side.release}) stopped answering: ${messageOf(error)}`, {
      cause: error,
    });
  });
  const entry = share.releases.find((r) => r.release === side.release);
  const crashes = CRASH_REASONS.reduce((n, reason) => n + (entry?.exits[reason] ?? 0), 0);
  return {
    figures: isFigures(entry?.figures) ? entry.figures : undefined,
    crashes,
    workers: entry === undefined ? 0 : entry.workers.ready,
    counted: entry?.kind === 'node',
  };
}

function since(side: Side, start: Reading, now: Reading): SideWindow {
  let figures = now.counted ? now.figures : undefined;
  if (figures !== undefined && start.figures !== undefined) {
    figures = figuresSince(figures, start.figures);
  }
  return {
    release: side.release,
    workers: now.workers,
    figures,
    crashes: Math.max(0, now.crashes - start.crashes),
  };
}

/** What {@link observeStep} needs. */
export interface StepWindow {
  root: string;
  newSide: Side;
  oldSide: Side;
  windowMs: number;
  limits: CanaryLimits;
  /** Where to check health through the bind while a release's requests are not counted. */
  health: HealthTarget | undefined;
  /** Told when the window is extended for lack of requests. */
  onExtend: (verdict: StepVerdict) => void;
  /** The deploy's: aborted, the window ends with `Interrupted`. */
  signal?: AbortSignal | undefined;
}

/**
 * Watches one canary step: reads both masters' counters at the start, fails at once when a
 * worker of the new release crashes, its 5xx share is worse beyond doubt ({@link earlyVerdict})
 * or, for an exec release, a health check through the bind fails; else judges the window at
 * its end. Too few requests extend the window once, then the
 * verdict is "no data". Interruptible like every wait of a deploy.
 */
export async function observeStep(window: StepWindow): Promise<StepVerdict> {
  const { root, newSide, oldSide, limits } = window;
  const newStart = await read(root, newSide);
  const oldStart = await read(root, oldSide);
  let deadline = Date.now() + window.windowMs;
  let extended = false;
  let nextHealth = Date.now() + HEALTH_EVERY_MS;
  for (;;) {
    throwIfAborted(window.signal);
    await sleep(LOOK_EVERY_MS, window.signal);
    const newNow = await read(root, newSide);
    const oldNow = await read(root, oldSide);
    const newWindow = since(newSide, newStart, newNow);
    const oldWindow = since(oldSide, oldStart, oldNow);
    const early = earlyVerdict(newWindow, oldWindow, limits);
    if (early !== undefined) return early;
    if (Date.now() >= deadline) {
      const verdict = judgeStep(newWindow, oldWindow, limits);
      if (verdict.verdict !== 'no-data' || extended) return verdict;
      extended = true;
      deadline = Date.now() + window.windowMs;
      window.onExtend(verdict);
      continue;
    }
    const counted = newNow.counted && newNow.figures !== undefined;
    if (!counted && window.health !== undefined && Date.now() >= nextHealth) {
      nextHealth = Date.now() + HEALTH_EVERY_MS;
      const problem = await checkHealth(window.health);
      if (problem !== undefined) throw new Error(`health check failed: ${problem}`);
    }
  }
}
