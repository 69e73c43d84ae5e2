import type { Logger } from 'pino';
import type { ListenSocket } from '../handover/listen-sockets.js';
import type { Release } from '../release/read-release.js';

/** How a log line names a socket: its path, or an `http://` URL. */
function urlOf(socket: ListenSocket): string {
  return socket.bind.kind === 'unix' ? socket.address : `http://${socket.address}`;
}

/** The master's first lines, as the seed's log excerpt shows them: pid, release, each socket. */
export function logStart(
  logger: Logger,
  start: { release: Release; workers: number; sockets: ListenSocket[]; metrics?: ListenSocket },
): void {
  const { release, sockets, metrics } = start;
  logger.info(
    {
      release: release.name,
      version: release.version,
      binds: sockets.map((s) => s.address),
      workers: start.workers,
    },
    `starting master with pid: ${process.pid}`,
  );
  for (const socket of sockets) {
    logger.info({ inherited: socket.inherited }, `listening at ${urlOf(socket)}`);
  }
  if (metrics !== undefined) {
    logger.info({ inherited: metrics.inherited }, `serving metrics at ${urlOf(metrics)}/metrics`);
  }
}

/**
 * Logs a worker's stray IPC message (none of prefork's: the app's own `process.send`, or a
 * worker of another prefork version) once per worker, so an app that sends many does not
 * flood the log. The message itself is ignored.
 */
export function strayMessageLog(logger: Logger): (pid: number, problem: string) => void {
  const told = new Set<number>();
  return (pid, problem) => {
    if (told.has(pid)) return;
    if (told.size > 1000) told.clear();
    told.add(pid);
    logger.warn(
      { worker: pid, problem },
      `worker ${pid} sent a message on its IPC channel that is none of prefork's: ignored (further ones from it are not logged)`,
    );
  };
}
