/** Thrown when a deploy is interrupted (Ctrl-C, TERM): it rolls back instead of stopping mid-step. */
export class Interrupted extends Error {
  constructor(signal: string) {
    super(`interrupted by ${signal}`);
    this.name = 'Interrupted';
  }
}

/** Set once the deploy got SIGINT/SIGTERM; every wait checks it. */
export const interruption: { signal: string | undefined } = { signal: undefined };

/** Sleeps `ms` (an interruption is seen by the caller's next check, as in {@link poll}). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every `everyMs` until it returns a value (not undefined), failing with
 * `onTimeout()` after `timeoutMs`. A check may throw to fail at once. Interruptible.
 */
export async function poll<T>(
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  onTimeout: () => Error,
  { everyMs = 25, interruptible = true }: { everyMs?: number; interruptible?: boolean } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (interruptible && interruption.signal) throw new Interrupted(interruption.signal);
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) throw onTimeout();
    await sleep(everyMs);
  }
}
