import { controlRequest, controlSocketPath } from '../control/client.js';
import type { MasterMetrics } from '../control/schema.js';

/** How long a scrape waits for the other master's share before it uses the last one it got. */
export const PEER_ANSWER_MS = 500;

/**
 * The other master of an upgrade's share of the metrics, asked on its control socket at each
 * scrape. When it does not answer in time, its last answer stands in (a busy master's figures
 * a second old, rather than its releases missing from one scrape); a master that never
 * answered adds nothing.
 */
export class PeerMetrics {
  private last: MasterMetrics | undefined;

  constructor(private readonly root: string) {}

  /** The share of the master with `pid`, or undefined when there is none to be had. */
  async fetch(pid: number): Promise<MasterMetrics | undefined> {
    if (this.last?.pid !== pid) this.last = undefined;
    try {
      const answer = await controlRequest(
        controlSocketPath(this.root, pid),
        { cmd: 'metrics' },
        PEER_ANSWER_MS,
      );
      // The shape is the client's to check (`MasterMetricsSchema`); the pid is this one's.
      if (answer.pid === pid) this.last = answer;
    } catch {
      // starting, stopping or busy: the last answer stands in
    }
    return this.last;
  }
}
