/**
 * A worker process: loads the release's app, listens on the sockets its master passed at
 * fd 3, 4, ..., reports ready, heartbeats, and drains on QUIT (or when its master goes away).
 * Signals: TERM/INT quick exit, QUIT graceful drain, USR1 reopen the log file.
 */
import { closeSync, openSync } from 'node:fs';
import type net from 'node:net';
import * as v from 'valibot';
import { messageOf } from '../errors/index.js';
import { createLog } from '../log/logger.js';
import { onChannelClosed } from '../process/channel-closed.js';
import { deliverHandlelessMessages } from '../process/handleless-messages.js';
import { ENV_WORKER_OPTIONS } from '../protocol/env.js';
import {
  CANARY_CONNECTION_MS,
  MasterMessageSchema,
  type WorkerMessage,
  type WorkerOptions,
  WorkerOptionsSchema,
} from '../protocol/ipc.js';
import { describeIssues } from '../protocol/issues.js';
import { workerTitle } from '../protocol/titles.js';
import { ConnectionMover, type TcpHandle } from './drain/connection-mover.js';
import { ConnectionTracker } from './drain/connection-tracker.js';
import { type DrainProgress, drainConnections } from './drain/drain.js';
import { canMoveConnections, httpProtocolOf, isTls } from './http-protocol.js';
import { type LoadedApp, loadApp } from './load-app.js';
import { RequestRecorder } from './request-recorder.js';
import { checkSelf } from './self-check.js';
import { listenOnInheritedSockets } from './serve.js';
import { warmUp } from './warm-up.js';

function readOptions(): WorkerOptions {
  const raw = process.env[ENV_WORKER_OPTIONS];
  if (raw === undefined || typeof process.send !== 'function') {
    process.stderr.write('prefork: this is a prefork worker; it is started by a prefork master\n');
    process.exit(2);
  }
  delete process.env[ENV_WORKER_OPTIONS];
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = raw;
  }
  const options = v.safeParse(WorkerOptionsSchema, parsed);
  if (!options.success) {
    // Its master is of a prefork version this worker file does not read: it exits before it
    // serves, and the master counts a failed boot (and serves on with the workers it has).
    process.stderr.write(
      `prefork: this worker cannot read the options its master sent (${describeIssues(options.issues)}): the master runs another prefork version; upgrade the master (prefork upgrade, or USR2 by hand)\n`,
    );
    process.exit(2);
  }
  return options.output;
}

const options = readOptions();
process.title = workerTitle(options.release);

const log = await createLog({ level: options.logLevel, file: options.logFile, role: 'worker' });
const logger = log.logger.child({ release: options.release });

function send(message: WorkerMessage): void {
  if (process.connected) process.send?.(message);
}

let app: LoadedApp | undefined;
let listeners: net.Server[] = [];
let tracker: ConnectionTracker | undefined;
/** Moves its idle connections away as it drains, and takes those handed to it (plain HTTP/1.1). */
let mover: ConnectionMover | undefined;
/** Counts responses by status and latency, when the master serves metrics. */
let recorder: RequestRecorder | undefined;
/** A canary deploy is judging this release (set at spawn, then by the master's messages). */
let canary = options.canary;
/** Listening on every socket: from here on a drain has connections to finish. */
let serving = false;
let draining = false;
/** Sending itself warm-up requests: they count for nothing (maxRequests, heartbeats). */
let warming = false;

/** How long a draining worker waits for its last heartbeat to be handed to the master. */
const LAST_HEARTBEAT_MS = 1000;

/** Where this worker's drain is, once it began. */
const drainProgress: DrainProgress = { deadline: undefined, closedAtDeadline: 0 };

function heartbeatMessage(): WorkerMessage {
  return {
    type: 'heartbeat',
    requests: tracker?.requests ?? 0,
    rss,
    ...(recorder === undefined ? {} : { figures: recorder.figures }),
    ...(tracker === undefined ? {} : { connections: tracker.counts() }),
    ...(drainProgress.deadline === undefined ? {} : { drainDeadline: drainProgress.deadline }),
    closedAtDeadline: drainProgress.closedAtDeadline,
    ...(tracker === undefined || drainProgress.deadline === undefined
      ? {}
      : {
          moves: {
            moved: mover?.outcomes.taken ?? 0,
            refused: mover?.outcomes.refused ?? 0,
            lost: mover?.outcomes.lost ?? 0,
            closed: tracker.closedDraining,
            reset: tracker.resetDraining,
          },
        }),
  };
}

/**
 * A last heartbeat before a drained worker exits, so that its master counts every request it
 * answered (metrics: counters carry on across worker exits). Bounded: a master that is gone or
 * slow to read does not hold the exit.
 */
function sendLastHeartbeat(): Promise<void> {
  if (!process.connected) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, LAST_HEARTBEAT_MS);
    process.send?.(heartbeatMessage(), undefined, {}, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function exit(code: number, reason: string): never {
  try {
    logger.info({ reason }, `worker exiting (pid: ${process.pid})`);
  } finally {
    process.exit(code);
  }
}

/** Drains; `move`: the master has somewhere to move idle connections to (a `drain` message). */
async function drain(reason: string, code = 0, move = false): Promise<void> {
  if (draining) return;
  draining = true;
  if (!serving || tracker === undefined || app === undefined) exit(code, `${reason} before ready`);
  const target = { app, listeners, tracker, logger, mover: move ? mover : undefined };
  await drainConnections(target, options, reason, drainProgress);
  const { moves } = heartbeatMessage() as { moves?: unknown };
  logger.info({ moves, closedAtDeadline: drainProgress.closedAtDeadline }, 'drained');
  await sendLastHeartbeat();
  exit(code, reason);
}

process.on('SIGTERM', () => exit(0, 'SIGTERM'));
process.on('SIGINT', () => exit(0, 'SIGINT'));
process.on('SIGQUIT', () => void drain('SIGQUIT'));
// An uncaught exception: stop taking connections and finish the requests in flight on
// other connections (they are not lost with this worker), then exit 1 for the master to
// replace the worker. Before the app is ready, the boot error path below reports it instead.
process.on('uncaughtException', (error) => {
  // More failures while draining change nothing: the drain (bounded by the graceful timeout,
  // and by the master's KILL after it) finishes the requests in flight.
  if (draining) return;
  logger.fatal({ err: error }, `uncaught exception: ${messageOf(error)}`);
  if (!serving) {
    send({
      type: 'boot-error',
      message: `release ${options.release} crashed while starting: ${messageOf(error)}`,
    });
    process.exit(1);
  }
  void drain('uncaught exception', 1);
});
process.on('SIGUSR1', () => {
  log.reopen();
  logger.info('reopened log file');
});
/**
 * A canary deploy starts or ends: record figures (kept when metrics are on anyway) and ask
 * kept-alive clients to reconnect now and then, so the kernel spreads them over both releases.
 */
function setCanary(on: boolean): void {
  if (tracker === undefined || app === undefined) return;
  tracker.reconnectAfterMs = on ? CANARY_CONNECTION_MS : 0;
  const record = on || options.metrics;
  tracker.timing = record;
  if (!record) recorder?.stop();
  else if (recorder !== undefined) recorder.start();
  else {
    const connections = tracker;
    recorder = new RequestRecorder(app.server, (socket) => connections.startOf(socket));
  }
}

// The master asks how this worker's app answers (a deploy verifying the new release), tells it
// to drain, or hands it a connection (or answers for one it offered).
// A connection whose fd could not be received (out of fds) still comes, without it: refused.
deliverHandlelessMessages(process);
process.on('message', (raw: unknown, handle: unknown) => {
  const parsed = v.safeParse(MasterMessageSchema, raw);
  if (!parsed.success) return; // none of prefork's: nothing for the worker to do
  const message = parsed.output;
  if (message.type === 'conn') {
    if (mover !== undefined) mover.take(message, handle, serving && !draining);
    else refuseConnection(message.id, handle);
    return;
  }
  if (message.type === 'conn-answer') {
    mover?.onAnswer(message);
    return;
  }
  if (message.type === 'drain') {
    void drain(message.reason, 0, message.move);
    // A drain asked for by message is the one SIGQUIT would have started: the app's own
    // SIGQUIT listeners hear of it as they would of the signal (this worker's is a no-op now).
    process.emit('SIGQUIT', 'SIGQUIT');
    return;
  }
  if (message.type === 'canary') {
    canary = message.on === true;
    setCanary(canary);
    return;
  }
  if (message.type !== 'health-check') return;
  if (!serving || draining || app === undefined) {
    const why = draining ? 'draining' : 'not serving yet';
    send({
      type: 'health',
      id: message.id,
      status: null,
      error: `it is ${why}`,
    });
    return;
  }
  void checkSelf(app.server, message).then(send);
});
/** A connection handed to a worker that cannot take any (still loading, or TLS): refused. */
function refuseConnection(id: number, handle: unknown): void {
  send({ type: 'conn-answer', id, outcome: 'refused' });
  (handle as Partial<TcpHandle> | undefined)?.close?.();
}

// The master is gone (killed?), or went while this process was still starting: finish what we
// hold and leave, never linger as an orphan. Offers still out cannot be answered now: their
// copies close at once, while their clients are likely still quiet (they see a close and
// reconnect); waiting out the offers' expiry let nearly every one of them send a request into
// a connection that then closed unread (a reset). Whoever had taken one keeps it: closing this
// copy does not close the connection.
onChannelClosed(process, () => {
  mover?.abandon();
  void drain('master disconnected');
});

// Out of file descriptors, libuv accepts each new connection and closes it at once to shed
// load, reporting nothing: a worker in that state silently drops whatever reaches it. Probe
// for it often, and drain at once (no more accepting) so the other workers take the
// connections; the master replaces this one when it exits.
const FD_PROBE_MS = 50;
const fdProbe = setInterval(() => {
  if (!serving || draining) return;
  try {
    closeSync(openSync('/dev/null', 'r'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EMFILE' && code !== 'ENFILE') return;
    logger.error(`out of file descriptors (${code}): draining so that no connection is shed here`);
    void drain(`out of file descriptors (${code})`, 1);
  }
}, FD_PROBE_MS);
fdProbe.unref();

let rss = 0;
const heartbeat = setInterval(() => {
  try {
    rss = process.memoryUsage.rss();
  } catch {
    // reading /proc needs a free fd: out of them (EMFILE), report the last value
  }
  send(heartbeatMessage());
}, options.heartbeatMs);
heartbeat.unref();

try {
  app = await loadApp(options.entry);
  let retired = false;
  tracker = new ConnectionTracker(
    app.server,
    () => {
      if (warming) return;
      if (!retired && options.maxRequests > 0 && (tracker?.requests ?? 0) >= options.maxRequests) {
        retired = true;
        send({ type: 'retire', requests: tracker?.requests ?? 0 });
      }
    },
    options.metrics,
  );
  const connections = tracker;
  if (options.metrics) {
    recorder = new RequestRecorder(app.server, (socket) => connections.startOf(socket));
  }
  // Also on when the canary message came while the app was loading.
  if (canary) setCanary(true);
  if (options.warmup > 0) {
    warming = true;
    const result = await warmUp(app.server, {
      requests: options.warmup,
      path: options.warmupPath,
      timeoutMs: options.warmupTimeoutMs,
    });
    warming = false;
    tracker.requests = 0;
    recorder?.reset();
    if (result.stopped === undefined) {
      logger.info({ requests: result.answered, ms: result.ms }, 'warmed up');
    } else {
      logger.warn(
        { requests: result.answered, ms: result.ms },
        `warm-up stopped early (${result.stopped}): serving anyway`,
      );
    }
  }
  if (options.moveConnections && canMoveConnections(app.server)) {
    mover = new ConnectionMover(
      (message, handle, written) => {
        if (!process.connected) return false;
        process.send?.(message, handle as never, {}, () => written?.());
        return true;
      },
      (socket, handedIn) => connections.adopt(socket, handedIn),
    );
  }
  listeners = await listenOnInheritedSockets(app.server, options.sockets.length);
  serving = true;
} catch (error) {
  const what = error instanceof Error && error.name !== 'Error' ? `${error.name}: ` : '';
  const message = `release ${options.release} failed to start (${options.entry}): ${what}${messageOf(error)}`;
  logger.error({ err: error }, message);
  send({ type: 'boot-error', message });
  process.exit(1);
}
send({ type: 'ready', tls: isTls(app.server), http: httpProtocolOf(app.server), moves: true });
