import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import tls from 'node:tls';
import { PrivateEndpoint } from './private-endpoint.js';

/** Warm-up requests in flight at once. */
const CONCURRENCY = 4;
/** Why a warm-up that hit its deadline stopped. */
const RAN_OUT = 'the warm-up time ran out';

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
 * slower (docs/benchmarks.md). The requests go through a {@link PrivateEndpoint}, never through
 * the shared listen sockets. A failed request or the deadline ends the warm-up early; it
 * never keeps a worker from serving.
 */
export async function warmUp(server: net.Server, options: WarmUpOptions): Promise<WarmUpResult> {
  const started = Date.now();
  const deadline = started + options.timeoutMs;
  let endpoint: PrivateEndpoint | undefined;
  const keepAlive = { keepAlive: true, maxSockets: CONCURRENCY };
  const agent =
    server instanceof tls.Server
      ? new https.Agent({ ...keepAlive, rejectUnauthorized: false })
      : new http.Agent(keepAlive);
  let sent = 0;
  let answered = 0;
  let stopped: string | undefined;
  try {
    endpoint = await PrivateEndpoint.open(server);
    const self = endpoint;
    const one = async (): Promise<void> => {
      if (Date.now() >= deadline) {
        stopped ??= RAN_OUT;
        return;
      }
      sent += 1;
      try {
        await self.get(options.path, {
          userAgent: 'prefork-warmup',
          timeoutMs: deadline - Date.now(),
          agent,
        });
        answered += 1;
      } catch (error) {
        stopped ??= Date.now() >= deadline ? RAN_OUT : (error as Error).message;
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
    endpoint?.close();
  }
  return { answered, ms: Date.now() - started, ...(stopped !== undefined && { stopped }) };
}
