import type net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { pollUntil } from '../../wait/wait.js';
import { GrpcFront } from '../grpc-front.js';
import type { LoadedApp } from '../load-app.js';
import { stopAccepting } from '../serve.js';
import type { ConnectionMover } from './connection-mover.js';
import type { ConnectionTracker } from './connection-tracker.js';
import { callDrainHook, drainInfo } from './drain-hook.js';

/** How often a drain looks for idle connections to close. */
const DRAIN_POLL_MS = 50;

/** What a drain works on: the worker's app, its listeners and its connections. */
export interface DrainTarget {
  app: LoadedApp;
  listeners: net.Server[];
  tracker: ConnectionTracker;
  logger: Logger;
  /**
   * Moves idle HTTP/1.1 connections to the next generation, when the master said there is one
   * to take them (`DrainMessage.move`) and the app's server is one whose connections can move.
   */
  mover?: ConnectionMover | undefined;
}

/** Where a drain is, for the worker's heartbeats. */
export interface DrainProgress {
  /** When the connections still open will be closed (`Date.now()` ms). */
  deadline: number | undefined;
  /** Connections closed because they were still open at the deadline. */
  closedAtDeadline: number;
}

/** How long a drain may take, how its goodbyes are spread, how long idle means (`WorkerOptions`). */
export interface DrainLimits {
  gracefulTimeoutMs: number;
  goodbyeWindowMs: number;
  /** A drained HTTP/1.1 connection that does not move is closed once quiet this long. */
  keepAliveMinTimeoutMs: number;
}

/**
 * A worker's drain (SPEC §4): stop accepting, tell every connection by its kind's strategy
 * (`connection-kinds.ts`), tell the app through its `drain` export (SPEC §16: it says goodbye
 * to its WebSockets and streams, spread over the goodbye window), let in-flight requests finish and close idle connections once they
 * stay quiet, until none is left or `gracefulTimeoutMs` has passed — then close the rest — and
 * await the app's `close()` within what is left of the time. Resolves once all that is done.
 */
export async function drainConnections(
  target: DrainTarget,
  { gracefulTimeoutMs, goodbyeWindowMs, keepAliveMinTimeoutMs }: DrainLimits,
  reason: string,
  progress: DrainProgress = { deadline: undefined, closedAtDeadline: 0 },
): Promise<void> {
  const { app, listeners, tracker, logger, mover } = target;
  const deadline = Date.now() + gracefulTimeoutMs;
  progress.deadline = deadline;
  logger.info(
    { reason, connections: tracker.size, ...tracker.counts(), moving: mover !== undefined },
    'draining',
  );
  stopAccepting(listeners);
  tracker.startDraining(mover !== undefined);
  if (mover !== undefined) {
    // Idle connections are offered in a stream: more as answers come (MIN_PENDING_OFFERS, then
    // MAX_PENDING_OFFERS once the loop turns slowly).
    mover.onRoom = () => tracker.moveIdle(mover);
    tracker.moveIdle(mover, true);
  }
  // A grpc-js server closes its own sessions; what is open at the deadline is closed below.
  if (app.server instanceof GrpcFront) app.server.drainSessions(gracefulTimeoutMs);
  callDrainHook(app.drain, drainInfo(reason, deadline, goodbyeWindowMs, logger), logger);
  let lastLook = performance.now();
  const drained = await pollUntil(
    () => {
      const now = performance.now();
      if (mover !== undefined) {
        mover.loopLate(now - lastLook - DRAIN_POLL_MS);
        tracker.moveIdle(mover, true);
      }
      lastLook = now;
      if (app.server instanceof GrpcFront) app.server.drainLateSessions();
      tracker.closeIdle(keepAliveMinTimeoutMs);
      return tracker.size === 0 && (mover?.pending ?? 0) === 0;
    },
    gracefulTimeoutMs,
    { everyMs: DRAIN_POLL_MS },
  );
  if (!drained) {
    logger.warn(
      { connections: tracker.size, ...tracker.counts() },
      'graceful timeout reached: closing the remaining connections',
    );
    mover?.abandon();
    progress.closedAtDeadline += tracker.destroyAll();
  }
  if (app.close === undefined) return;
  const remaining = Math.max(0, deadline - Date.now());
  try {
    await Promise.race([
      Promise.resolve(app.close()),
      new Promise((resolve) => setTimeout(resolve, remaining).unref()),
    ]);
  } catch (error) {
    logger.error({ err: error }, 'the app close() hook failed');
  }
}
