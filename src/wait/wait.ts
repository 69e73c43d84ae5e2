/**
 * The one way prefork waits: sleeps and polls that end at their deadline and at an
 * AbortSignal. A deploy aborts its signal on Ctrl-C or TERM, so every wait of the deploy stops
 * at once with {@link Interrupted} and the deploy rolls back; the rollback's own waits are
 * given no signal, so nothing interrupts them.
 */

/** Thrown by a wait whose signal was aborted: a deploy interrupted by Ctrl-C or TERM. */
export class Interrupted extends Error {
  constructor(reason: unknown) {
    super(`interrupted by ${String(reason)}`);
    this.name = 'Interrupted';
  }
}

/** Throws {@link Interrupted} when `signal` was aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new Interrupted(signal.reason);
}

/** Resolves after `ms`, or rejects with {@link Interrupted} as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new Interrupted(signal.reason));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Interrupted(signal?.reason));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** How a {@link poll} looks again, and what may stop it early. */
export interface PollOptions {
  /** Pause between checks (25 ms). */
  everyMs?: number;
  /** Aborting it ends the wait with {@link Interrupted}. */
  signal?: AbortSignal | undefined;
}

/**
 * Polls `check` every `everyMs` until it returns a value (not undefined), failing with
 * `onTimeout()` after `timeoutMs`. A check may throw to fail at once.
 */
export async function poll<T>(
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  onTimeout: () => Error,
  { everyMs = 25, signal }: PollOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    throwIfAborted(signal);
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) throw onTimeout();
    await sleep(Math.min(everyMs, Math.max(0, deadline - Date.now())), signal);
  }
}

/**
 * Polls like {@link poll}, but resolves false instead of failing at the deadline: for waits
 * whose caller decides what a timeout means (a process that did not exit in time).
 */
export async function pollUntil(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  options: PollOptions = {},
): Promise<boolean> {
  const timedOut = new Error('timed out');
  try {
    return await poll(
      async () => ((await check()) ? true : undefined),
      timeoutMs,
      () => timedOut,
      options,
    );
  } catch (error) {
    if (error === timedOut) return false;
    throw error;
  }
}
