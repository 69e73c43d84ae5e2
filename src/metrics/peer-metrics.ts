import { controlRequest, controlSocketPath } from '../control/client.js';
import type { MasterMetrics, MasterStatus } from '../control/schema.js';

/** How long a scrape waits for the other master's share before it uses the last one it got. */
export const PEER_ANSWER_MS = 500;

/**
 * The other master of an upgrade's answers, asked on its control socket at each scrape (its
 * share of the metrics) and each look of the live page (its status too). When it does not
 * answer in time, its last answer stands in (a busy master's figures a second old, rather than
 * its releases missing from one scrape); a master that never answered adds nothing.
 */
export class PeerMetrics {
  private last: MasterMetrics | undefined;
  private lastStatus: MasterStatus | undefined;

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

  /** The status of the master with `pid`, as {@link fetch} gets its share. */
  async fetchStatus(pid: number): Promise<MasterStatus | undefined> {
    if (this.lastStatus?.pid !== pid) this.lastStatus = undefined;
    try {
      const answer = await controlRequest(
        controlSocketPath(this.root, pid),
        { cmd: 'status' },
        PEER_ANSWER_MS,
      );
      if (answer.pid === pid && answer.root === this.root) this.lastStatus = answer;
    } catch {
      // as in fetch()
    }
    return this.lastStatus;
  }
}
