import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { callDrainHook, drainInfo } from '../../src/worker/drain/drain-hook.js';

const logger = pino({ level: 'silent' });

describe("the app's drain hook", () => {
  it('spreads goodbyes evenly over the window, the first at once', async () => {
    const info = drainInfo('test', Date.now() + 10_000, 400, logger);
    expect(info.windowMs).toBe(400);
    const start = Date.now();
    const at: number[] = [];
    await info.spread(
      Array.from({ length: 40 }, (_, i) => i),
      () => at.push(Date.now() - start),
    );
    expect(at).toHaveLength(40);
    expect(at[0]).toBeLessThan(50);
    // Item 39 of 40 is due at 39/40 of the window.
    expect(at[39]).toBeGreaterThanOrEqual(390);
    // Evenly: the first half of the items in the first half of the window (give or take a tick).
    expect(at[19]).toBeLessThan(250);
    expect(at[20]).toBeGreaterThanOrEqual(200);
  });

  it('takes at most half the time to the deadline, and stops at the deadline', async () => {
    const info = drainInfo('test', Date.now() + 200, 5000, logger);
    expect(info.windowMs).toBeLessThanOrEqual(100);
    const none = drainInfo('test', Date.now(), 5000, logger);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(none.signal.aborted).toBe(true);
    const called: number[] = [];
    await none.spread([1, 2, 3], (i) => called.push(i));
    // A window of 0: every goodbye at once.
    expect(called).toEqual([1, 2, 3]);
  });

  it('goes on past a goodbye that throws, and a hook that throws or rejects', async () => {
    const info = drainInfo('test', Date.now() + 10_000, 0, logger);
    const called: number[] = [];
    await info.spread([1, 2, 3], (i) => {
      called.push(i);
      if (i === 2) throw new Error('boom');
    });
    expect(called).toEqual([1, 2, 3]);
    expect(() =>
      callDrainHook(
        () => {
          throw new Error('sync');
        },
        info,
        logger,
      ),
    ).not.toThrow();
    callDrainHook(() => Promise.reject(new Error('async')), info, logger);
    callDrainHook(undefined, info, logger);
  });
});
