import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import http from 'node:http';
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
  /** The first few socket errors: when (ISO time) and what, to tell a failure's moment. */
  firstErrors?: string[];
}

/** Counts a 200 answer's JSON body (`{ release, pid }`) by release and pid; other bodies count nowhere. */
function tally(body: string, byRelease: Record<string, number>, pids: Set<number>): void {
  try {
    const parsed = JSON.parse(body) as { release?: string; pid?: number };
    if (parsed.release) byRelease[parsed.release] = (byRelease[parsed.release] ?? 0) + 1;
    if (parsed.pid) pids.add(parsed.pid);
  } catch {
    // not JSON: counted in responses only
  }
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
  options: {
    connections?: number;
    durationSec?: number;
    close?: boolean;
    path?: string;
  } = {},
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
      // autocannon ends a stopped run at its next sample tick (1 s by default): 100 ms makes
      // stop() take 0.1 s, not up to 1 s, in each of the suite's load runs.
      sampleInt: 100,
      headers: options.close ? { connection: 'close' } : {},
      requests: [
        {
          method: 'GET',
          path: options.path ?? '/',
          onResponse: (status: number, body: string) => {
            responses += 1;
            if (status !== 200) return;
            tally(body, byRelease, pids);
          },
        },
      ],
    },
    () => {},
  );
  const firstErrors: string[] = [];
  instance.on('reqError', (error: NodeJS.ErrnoException) => {
    if (firstErrors.length < 5)
      firstErrors.push(`${new Date().toISOString()} ${error.code ?? error.message}`);
  });
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
        firstErrors,
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
    const instance = autocannon(${JSON.stringify({ url, connections: options.connections, duration: options.durationSec, timeout: 20, sampleInt: 100 })}, () => {});
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

/**
 * Load from Node's own HTTP client, as real clients send it: `connections` loops, each sending
 * its next request once the last answer is read; kept-alive connections through an agent
 * (which, as RFC 9112 requires, stops using a connection once an answer says
 * `Connection: close`), or with `close`, a fresh connection per request. autocannon keeps
 * writing on a connection after such an answer; a server that closes at once, as Node's and
 * Go's do, then resets the request it was already sent, a failure no real client provokes.
 * With `pauseMs`, each loop waits that long after each answer (a client that thinks between
 * requests, and less CPU for the load). Keep it well under a draining worker's idle close
 * (`--keep-alive-min-timeout`, 5 s by default) unless a test is about that close: a client
 * that sends its next request at the instant it comes races it (docs/signals.md). Bounded by `durationSec`; `stop()` ends it sooner.
 */
export function startClientLoad(
  url: string,
  options: { connections?: number; durationSec?: number; close?: boolean; pauseMs?: number } = {},
): Load {
  const byRelease: Record<string, number> = {};
  const pids = new Set<number>();
  const firstErrors: string[] = [];
  const target = new URL(url);
  const connections = options.connections ?? 4;
  const agent = options.close
    ? false
    : new http.Agent({ keepAlive: true, maxSockets: connections });
  const deadline = Date.now() + (options.durationSec ?? 60) * 1000;
  let responses = 0;
  let errors = 0;
  let non2xx = 0;
  let stopped = false;
  const failed = (error: NodeJS.ErrnoException, resolve: () => void) => {
    errors += 1;
    if (firstErrors.length < 5)
      firstErrors.push(`${new Date().toISOString()} ${error.code ?? error.message}`);
    resolve();
  };
  const once = () =>
    new Promise<void>((resolve) => {
      const req = http.get(
        {
          host: target.hostname,
          port: target.port,
          path: '/',
          agent,
          headers: options.close ? { connection: 'close' } : {},
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            text += chunk;
          });
          res.on('end', () => {
            responses += 1;
            if (res.statusCode !== 200) non2xx += 1;
            if (res.statusCode === 200) tally(text, byRelease, pids);
            resolve();
          });
          res.on('error', (error) => failed(error, resolve));
        },
      );
      req.setTimeout(20_000, () => req.destroy(new Error('timed out')));
      req.on('error', (error) => failed(error, resolve));
    });
  const loops = Array.from({ length: connections }, async () => {
    while (!stopped && Date.now() < deadline) {
      await once();
      if (options.pauseMs) await new Promise((r) => setTimeout(r, options.pauseMs));
    }
  });
  const done = Promise.all(loops);
  return {
    byRelease,
    count: () => responses,
    async stop() {
      stopped = true;
      await done;
      if (agent) agent.destroy();
      return {
        responses,
        errors,
        timeouts: 0,
        non2xx,
        failed: errors + non2xx,
        byRelease,
        pids,
        firstErrors,
      };
    },
  };
}

/** Keep-alive (8 connections) and `Connection: close` (4) traffic at once, for 120 s at most. */
export function startTraffic(url: string): { loads: Load[]; stop(): Promise<LoadResult[]> } {
  const loads = [
    startLoad(url, { connections: 8, durationSec: 120 }),
    startLoad(url, { connections: 4, durationSec: 120, close: true }),
  ];
  return { loads, stop: () => Promise.all(loads.map((l) => l.stop())) };
}
