import type { Logger } from 'pino';
import { closeListenSockets, sharedWithOthers } from '../handover/listen-sockets.js';
import { oldbinPath } from '../protocol/files.js';
import { removePidfileIfOurs } from '../state/pidfile.js';
import type { MasterParts } from './master-parts.js';
import type { UpgradeState } from './upgrade-state.js';

/**
 * Cleans up what a master owns — its control socket, notify sockets, pidfiles, and the listen
 * sockets no other master shares — whatever fails on the way, then calls `exit`; with metrics
 * on, once the scrapes it accepted are answered.
 */
export function cleanUpAndExit(
  parts: Pick<MasterParts, 'control' | 'notifyDir' | 'sockets' | 'metrics'>,
  pidfile: string,
  upgrade: UpgradeState,
  logger: Logger,
  code: number,
  exit: () => void,
): void {
  let sharers: ReturnType<UpgradeState['sharers']> | undefined;
  try {
    parts.control?.close();
    parts.notifyDir.remove();
    removePidfileIfOurs(pidfile, process.pid);
    removePidfileIfOurs(oldbinPath(pidfile), process.pid);
    sharers = upgrade.sharers();
    closeListenSockets(parts.sockets, sharers);
    logger.info({ code }, `master exiting (pid: ${process.pid})`);
  } finally {
    const { metrics } = parts;
    if (metrics === undefined || sharers === undefined) exit();
    else metrics.stop(sharedWithOthers(metrics.socket, sharers), exit);
  }
}
