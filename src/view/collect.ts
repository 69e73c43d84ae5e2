import {
  ControlProtocolError,
  controlRequest,
  controlSocketPath,
  queryMasterNow,
} from '../control/client.js';
import type { MasterMetrics } from '../control/schema.js';
import { readJournal } from '../journal/journal.js';
import { isAlive } from '../process/alive.js';
import { readPidfilePair } from '../state/pidfile.js';
import {
  deployInFlight,
  inServingOrder,
  VIEW_FORMAT,
  type ViewMaster,
  type ViewSnapshot,
} from './snapshot.js';

/** How long a look waits for a master's figures before it shows the master without them. */
const METRICS_ANSWER_MS = 1000;

/** A master's share of the figures, or null when it does not give it in time. */
async function metricsOf(root: string, pid: number): Promise<MasterMetrics | null> {
  try {
    const share = await controlRequest(
      controlSocketPath(root, pid),
      { cmd: 'metrics' },
      METRICS_ANSWER_MS,
    );
    return share.pid === pid ? share : null;
  } catch {
    return null;
  }
}

/**
 * One look at the service on this host, for `prefork top`: the masters the pidfile and its
 * `.oldbin` name, asked on their control sockets (status and figures), and the deploy running
 * now. A master that does not answer, or answers in a shape this prefork does not read (another
 * version's), is left out of the look.
 */
export async function collectSnapshot(root: string, pidfile: string): Promise<ViewSnapshot> {
  const masters: ViewMaster[] = [];
  const asked = new Set<number>();
  const pending = readPidfilePair(pidfile).flatMap(({ pid }) => (pid === undefined ? [] : [pid]));
  // The pidfiles, then the other master of an upgrade each names (a new master booting before
  // it writes its pidfile).
  for (let pid = pending.shift(); pid !== undefined; pid = pending.shift()) {
    if (asked.has(pid)) continue;
    asked.add(pid);
    try {
      const status = await queryMasterNow(root, pid);
      if (status === undefined) continue;
      masters.push({ status, metrics: await metricsOf(root, pid) });
      for (const other of [status.newMasterPid, status.oldMasterPid]) {
        if (other !== null && other !== undefined) pending.push(other);
      }
    } catch (error) {
      if (!(error instanceof ControlProtocolError)) throw error;
    }
  }
  const journal = readJournal(root);
  return {
    format: VIEW_FORMAT,
    at: Date.now(),
    root,
    masters: inServingOrder(masters),
    deploy: deployInFlight(journal, journal !== undefined && isAlive(journal.pid)),
  };
}
