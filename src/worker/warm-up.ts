import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';

/** Warm-up requests in flight at once. */
const CONCURRENCY = 4;

/** What a warm-up did. */
export interface WarmUpResult {
  /** Requests answered (any status). */
  answered: number;
  ms: number;
  /** Why it stopped early: a request failed, or the time ran out. */
  stopped?: string;
}

/** How many requests, for which path, within how long. */
export interface WarmUpOptions {
  requests: number;
  path: string;
  timeoutMs: number;
}

/**
 * Sends `server` `requests` GETs of `path` before the worker takes traffic, so that V8 has
 * compiled the request path (Node's HTTP code and the app's) by the time real clients arrive:
 * a fresh Node process serves its first few hundred milliseconds of requests several times
 * slower (docs/benchmarks.md). The requests go through a private Unix socket in an owner-only
 * directory, never through the shared listen sockets, which would hand them to whichever
 * worker accepts first — old ones included. A failed request or the deadline ends the warm-up
 * early; it never keeps a worker from serving.
 */
export async function warmUp(server: net.Server, options: WarmUpOptions): Promise<WarmUpResult> {
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  const dir = mkdtempSync(join(tmpdir(), 'prefork-warmup-'));
  const socketPath = join(dir, 's');
  const secure = server instanceof tls.Server;
  const listener = net.createServer((socket) => server.emit('connection', socket));
  const agent = secure
    ? new https.Agent({ keepAlive: true, maxSockets: CONCURRENCY, rejectUnauthorized: false })
    : new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const get = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const request = (secure ? https : http).get(
        { socketPath, path: options.path, agent, headers: { 'user-agent': 'prefork-warmup' } },
        (response) => {
          response.resume();
          response.once('end', resolve);
          response.once('error', reject);
        },
      );
      request.setTimeout(Math.max(1, deadline - Date.now()), () =>
        request.destroy(new Error('the warm-up time ran out')),
      );
      request.once('error', reject);
    });
  let sent = 0;
  let answered = 0;
  let stopped: string | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(socketPath, resolve);
    });
    const one = async (): Promise<void> => {
      if (Date.now() >= deadline) {
        stopped ??= 'the warm-up time ran out';
        return;
      }
      sent += 1;
      try {
        await get();
        answered += 1;
      } catch (error) {
        stopped ??= (error as Error).message;
      }
    };
    const lane = async (): Promise<void> => {
      while (stopped === undefined && sent < options.requests) await one();
    };
    // One request alone first: a path that fails, fails once.
    await one();
    await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  } catch (error) {
    stopped = (error as Error).message;
  } finally {
    agent.destroy();
    listener.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return { answered, ms: Date.now() - started, ...(stopped !== undefined && { stopped }) };
}
