import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import autocannon from 'autocannon';
import { expect } from 'vitest';
import { track } from './processes.js';

const require = createRequire(import.meta.url);

/** What a load run saw. */
export interface LoadResult {
  /** Responses received. */
  responses: number;
  /** Socket errors (resets, refused connections) and timeouts. */
  errors: number;
  timeouts: number;
  /** Responses with a status other than 2xx. */
  non2xx: number;
  /** errors + timeouts + non2xx. */
  failed: number;
  /** Responses per release name (from the JSON bodies). */
  byRelease: Record<string, number>;
  /** Worker pids that answered. */
  pids: Set<number>;
}

/** A running load generator. */
export interface Load {
  /** Responses per release so far. */
  byRelease: Record<string, number>;
  /** Responses so far. */
  count(): number;
  /** Stops (or waits for the end of a bounded run) and returns the totals. */
  stop(): Promise<LoadResult>;
}

/**
 * Starts autocannon against `url`: keep-alive connections by default, or `Connection: close`
 * on every request. Bounded by `durationSec`; `stop()` ends it sooner.
 */
export function startLoad(
  url: string,
  options: { connections?: number; durationSec?: number; close?: boolean; path?: string } = {},
): Load {
  const byRelease: Record<string, number> = {};
  const pids = new Set<number>();
  let responses = 0;
  let stopped = false;
  const instance = autocannon(
    {
      url,
      connections: options.connections ?? 8,
      duration: options.durationSec ?? 60,
      timeout: 20,
      headers: options.close ? { connection: 'close' } : {},
      requests: [
        {
          method: 'GET',
          path: options.path ?? '/',
          onResponse: (status: number, body: string) => {
            responses += 1;
            if (status !== 200) return;
            try {
              const parsed = JSON.parse(body) as { release?: string; pid?: number };
              if (parsed.release) byRelease[parsed.release] = (byRelease[parsed.release] ?? 0) + 1;
              if (parsed.pid) pids.add(parsed.pid);
            } catch {
              // not JSON: counted in responses only
            }
          },
        },
      ],
    },
    () => {},
  );
  const done = new Promise<autocannon.Result>((resolve) => instance.on('done', resolve));
  return {
    byRelease,
    count: () => responses,
    async stop() {
      if (!stopped) {
        stopped = true;
        instance.stop();
      }
      const result = await done;
      const errors = result.errors - result.timeouts;
      // `TEST_LOAD_REPORT=file npm test` records what each test sent and lost (docs/reliability.md).
      const report = process.env.TEST_LOAD_REPORT;
      if (report) {
        const { currentTestName, testPath } = expect.getState();
        appendFileSync(
          report,
          `${JSON.stringify({ file: testPath?.replace(/^.*\/test\//, 'test/'), test: currentTestName, sent: responses + result.errors, failed: result.errors + result.non2xx })}\n`,
        );
      }
      return {
        responses,
        errors,
        timeouts: result.timeouts,
        non2xx: result.non2xx,
        failed: result.errors + result.non2xx,
        byRelease,
        pids,
      };
    },
  };
}

/**
 * Starts autocannon in a process of its own, so that the load takes a core of its own rather
 * than sharing the test's event loop: for loads meant to saturate the machine. `stop()` ends it
 * (or waits for the end of a bounded run) and returns the totals (no per-release counts).
 */
export function startLoadProcess(
  url: string,
  options: { connections: number; durationSec: number },
): { stop(): Promise<Omit<LoadResult, 'byRelease' | 'pids'>> } {
  const code = `
    const autocannon = require(${JSON.stringify(require.resolve('autocannon'))});
    const instance = autocannon(${JSON.stringify({ url, connections: options.connections, duration: options.durationSec, timeout: 20 })}, () => {});
    process.on('message', () => instance.stop());
    instance.on('done', (r) => {
      process.send({ responses: r.requests.total, errors: r.errors - r.timeouts, timeouts: r.timeouts, non2xx: r.non2xx, failed: r.errors + r.non2xx }, () => process.exit(0));
    });
  `;
  const child = spawn(process.execPath, ['-e', code], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  track(child.pid);
  const done = new Promise<Omit<LoadResult, 'byRelease' | 'pids'>>((resolve, reject) => {
    child.once('message', (result) => resolve(result as Omit<LoadResult, 'byRelease' | 'pids'>));
    child.once('exit', (code) => reject(new Error(`the load process exited with ${code}`)));
  });
  return {
    stop() {
      child.send('stop');
      return done;
    },
  };
}
