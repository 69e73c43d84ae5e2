import type { Logger } from 'pino';

/**
 * What a release's `drain` export is given when its worker's drain starts (SPEC §16): when the
 * remaining connections will be closed, and a way to say goodbye to many clients spread over
 * the goodbye window, so they do not all reconnect to the new release in the same instant.
 */
export interface DrainInfo {
  /** Why the worker drains: the signal (`SIGQUIT`) or what the master asked for. */
  reason: string;
  /** When connections still open are closed (`Date.now()` milliseconds). */
  deadline: number;
  /** Aborted at the deadline. */
  signal: AbortSignal;
  /** The window goodbyes are spread over (ms): `--goodbye-window`, at most half the time left. */
  windowMs: number;
  /**
   * Calls `goodbye` once for each of `items`, evenly over the window (the first at once);
   * resolves when the last has been called, or at the deadline with the rest left uncalled.
   * An exception from `goodbye` is logged and the others still get theirs.
   */
  spread<T>(items: Iterable<T>, goodbye: (item: T) => unknown): Promise<void>;
}

/** How often the spread looks for goodbyes that are due: a tick per batch, not a timer per item. */
const SPREAD_TICK_MS = 10;

/** Builds the {@link DrainInfo} of a drain that closes the remaining connections at `deadline`. */
export function drainInfo(
  reason: string,
  deadline: number,
  goodbyeWindowMs: number,
  logger: Logger,
): DrainInfo {
  const controller = new AbortController();
  const untilDeadline = Math.max(0, deadline - Date.now());
  setTimeout(() => controller.abort(), untilDeadline).unref();
  const windowMs = Math.min(goodbyeWindowMs, untilDeadline / 2);
  return {
    reason,
    deadline,
    signal: controller.signal,
    windowMs,
    spread: (items, goodbye) =>
      spreadOver([...items], goodbye, windowMs, controller.signal, (error) =>
        logger.error({ err: error }, 'a goodbye of the drain hook failed'),
      ),
  };
}

/** Item i of n is said goodbye to at i/n of `windowMs` from now. */
function spreadOver<T>(
  items: T[],
  goodbye: (item: T) => unknown,
  windowMs: number,
  signal: AbortSignal,
  onError: (error: unknown) => void,
): Promise<void> {
  const start = Date.now();
  let next = 0;
  const due = () => {
    const elapsed = Date.now() - start;
    while (next < items.length && (next * windowMs) / items.length <= elapsed) {
      const item = items[next] as T;
      next += 1;
      try {
        goodbye(item);
      } catch (error) {
        onError(error);
      }
    }
  };
  return new Promise((resolve) => {
    due();
    if (next >= items.length || signal.aborted) return resolve();
    const timer = setInterval(() => {
      if (signal.aborted) next = items.length;
      else due();
      if (next < items.length) return;
      clearInterval(timer);
      resolve();
    }, SPREAD_TICK_MS);
  });
}

/**
 * Calls the app's `drain` export, if any, without waiting for it: the drain goes on while the
 * app says its goodbyes. A hook that throws or rejects is logged; the drain is not stopped.
 */
export function callDrainHook(
  hook: ((info: DrainInfo) => unknown) | undefined,
  info: DrainInfo,
  logger: Logger,
): void {
  if (hook === undefined) return;
  try {
    Promise.resolve(hook(info)).catch((error: unknown) =>
      logger.error({ err: error }, 'the app drain() hook failed'),
    );
  } catch (error) {
    logger.error({ err: error }, 'the app drain() hook failed');
  }
}
