import { KILL_REAP_MS, MASTER_QUIT_MARGIN_MS, MASTER_TERM_MS } from '../wait/timeouts.js';
import { pollUntil } from '../wait/wait.js';
import { isAlive, sendSignal } from './alive.js';

/** How often a wait looks at the process again. */
const POLL_MS = 50;

/** Resolves true once `pid` has exited, false if it still runs after `timeoutMs`. */
export async function waitForExit(
  pid: number,
  { timeoutMs }: { timeoutMs: number },
): Promise<boolean> {
  return pollUntil(() => !isAlive(pid), timeoutMs, { everyMs: POLL_MS });
}

/** One step of a stop: send `signal`, then give the process `waitMs` to exit. */
export interface StopStep {
  signal: NodeJS.Signals;
  waitMs: number;
}

/** What {@link stopProcess} reports as it goes. */
export interface StopOptions {
  /** Called before each step after the first: the process outlived `previous`. */
  onEscalate?: (next: StopStep, previous: StopStep) => void;
}

/**
 * Stops `pid` by the plan: each step's signal, then up to its wait for the exit; the next step
 * only if it still runs. Resolves with the signal that stopped it (the last one sent), `gone`
 * when it had exited before the first (killed by someone else), or undefined when it survived
 * every step.
 */
export async function stopProcess(
  pid: number,
  plan: readonly StopStep[],
  options: StopOptions = {},
): Promise<NodeJS.Signals | 'gone' | undefined> {
  let previous: StopStep | undefined;
  for (const step of plan) {
    if (!isAlive(pid)) return previous?.signal ?? 'gone';
    if (previous !== undefined) options.onEscalate?.(step, previous);
    if (!sendSignal(pid, step.signal)) return step.signal;
    if (await waitForExit(pid, { timeoutMs: step.waitMs })) return step.signal;
    previous = step;
  }
  return undefined;
}

/**
 * How to stop a master whose workers may still serve: QUIT (they drain, up to the graceful
 * timeout), then TERM, then KILL as a last resort.
 */
export function masterStopPlan(gracefulTimeoutS: number): StopStep[] {
  return [
    { signal: 'SIGQUIT', waitMs: gracefulTimeoutS * 1000 + MASTER_QUIT_MARGIN_MS },
    { signal: 'SIGTERM', waitMs: MASTER_TERM_MS },
    { signal: 'SIGKILL', waitMs: KILL_REAP_MS },
  ];
}
