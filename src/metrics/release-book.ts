import type { ReleaseMetrics, ReleaseTraffic, WorkerStatus } from '../control/schema.js';
import { addFigures, emptyFigures, responsesIn } from '../figures/figures.js';
import { addConnections, type ConnectionCounts, noConnections } from '../protocol/connections.js';
import type { WorkerExitReason } from '../protocol/exits.js';
import type { RequestFigures } from '../protocol/figures.js';
import { addMoves, type MoveCounts, noMoves } from '../protocol/moves.js';

/** What the book needs of a worker: its release, state and latest heartbeat. */
export interface BookWorker {
  release: { name: string; version: string; kind: 'node' | 'exec' };
  state: WorkerStatus['state'];
  rss: number;
  requests: number;
  figures: RequestFigures | undefined;
  connections: ConnectionCounts | undefined;
  closedAtDeadline: number;
  /** What its drain did with its connections (moved, closed, reset...), once it drains. */
  moveCounts: MoveCounts | undefined;
}

/** A release's workers that are gone: their last figures and how they went. */
interface GoneWorkers {
  version: string;
  kind: 'node' | 'exec';
  requests: number;
  figures: RequestFigures | undefined;
  closedAtDeadline: number;
  drained: MoveCounts;
  exits: Partial<Record<WorkerExitReason, number>>;
  /** When the last of them exited (for pruning). */
  at: number;
}

/** One look at every release's totals (for the traffic window). */
interface Sample {
  at: number;
  totals: Map<string, { requests: number; responses: number; errors: number }>;
}

/** Releases without a worker left whose figures are still reported (the latest ones). */
const KEEP_GONE_RELEASES = 4;
/** The span `status` reports each release's request rate over. */
export const TRAFFIC_WINDOW_MS = 10_000;
/** How often the traffic window takes a sample. */
export const TRAFFIC_SAMPLE_MS = 1000;

/**
 * A master's per-release account of its workers: the figures of workers still alive come from
 * their latest heartbeat, those of workers that exited are kept here, so a release's counters
 * only ever grow while this master runs (a worker recycled or crashed takes nothing with it).
 * Releases with no worker left are dropped once more than {@link KEEP_GONE_RELEASES} of them
 * accumulate, oldest first, which bounds the series a long-lived master exposes.
 */
export class ReleaseBook {
  private readonly gone = new Map<string, GoneWorkers>();
  private readonly samples: Sample[] = [];

  /** Records a worker's exit: its last figures join its release's, its reason is counted. */
  workerExited(worker: BookWorker, reason: WorkerExitReason, now: number): void {
    const { name, version, kind } = worker.release;
    const entry = this.gone.get(name) ?? {
      version,
      kind,
      requests: 0,
      figures: undefined,
      closedAtDeadline: 0,
      drained: noMoves(),
      exits: {},
      at: now,
    };
    entry.requests += worker.requests;
    entry.closedAtDeadline += worker.closedAtDeadline;
    if (worker.moveCounts !== undefined) entry.drained = addMoves(entry.drained, worker.moveCounts);
    if (worker.figures !== undefined) {
      entry.figures = addFigures(entry.figures ?? emptyFigures(), worker.figures);
    }
    entry.exits[reason] = (entry.exits[reason] ?? 0) + 1;
    entry.at = now;
    this.gone.delete(name);
    this.gone.set(name, entry);
  }

  /** Every release with workers alive or gone, with its figures and its workers by state. */
  releases(workers: Iterable<BookWorker>): ReleaseMetrics[] {
    const byRelease = new Map<string, ReleaseMetrics>();
    const entryOf = (name: string, version: string, kind: 'node' | 'exec') => {
      let entry = byRelease.get(name);
      if (entry === undefined) {
        entry = {
          release: name,
          version,
          kind,
          workers: { booting: 0, ready: 0, draining: 0 },
          rss: 0,
          exits: {},
          connections: noConnections(),
          closedAtDeadline: 0,
          drained: noMoves(),
        };
        byRelease.set(name, entry);
      }
      return entry;
    };
    for (const worker of workers) {
      const { name, version, kind } = worker.release;
      const entry = entryOf(name, version, kind);
      entry.workers[worker.state] += 1;
      entry.rss += worker.rss;
      if (worker.connections !== undefined) {
        entry.connections = addConnections(entry.connections, worker.connections);
      }
      entry.closedAtDeadline += worker.closedAtDeadline;
      if (worker.moveCounts !== undefined) {
        entry.drained = addMoves(entry.drained, worker.moveCounts);
      }
      if (worker.figures !== undefined) {
        entry.figures = addFigures(entry.figures ?? emptyFigures(), worker.figures);
      }
    }
    this.prune(new Set(byRelease.keys()));
    for (const [name, gone] of this.gone) {
      const entry = entryOf(name, gone.version, gone.kind);
      entry.exits = { ...gone.exits };
      entry.closedAtDeadline += gone.closedAtDeadline;
      entry.drained = addMoves(entry.drained, gone.drained);
      if (gone.figures !== undefined) {
        entry.figures = addFigures(entry.figures ?? emptyFigures(), gone.figures);
      }
    }
    return [...byRelease.values()];
  }

  /** Takes a sample of every release's totals, at most every {@link TRAFFIC_SAMPLE_MS}. */
  sample(workers: Iterable<BookWorker>, now: number): void {
    const last = this.samples.at(-1);
    if (last !== undefined && now - last.at < TRAFFIC_SAMPLE_MS) return;
    const totals: Sample['totals'] = new Map();
    const add = (name: string, requests: number, figures: RequestFigures | undefined) => {
      const total = totals.get(name) ?? { requests: 0, responses: 0, errors: 0 };
      total.requests += requests;
      if (figures !== undefined) {
        total.responses += responsesIn(figures);
        total.errors += figures.codes[4] ?? 0;
      }
      totals.set(name, total);
    };
    // prefork is not in an exec release's data path: it has no requests to count.
    for (const worker of workers) {
      if (worker.release.kind === 'node') {
        add(worker.release.name, worker.requests, worker.figures);
      }
    }
    for (const [name, gone] of this.gone) {
      if (gone.kind === 'node') add(name, gone.requests, gone.figures);
    }
    this.samples.push({ at: now, totals });
    while ((this.samples[0]?.at ?? now) < now - TRAFFIC_WINDOW_MS) this.samples.shift();
  }

  /**
   * Each Node release's request rate and 5xx share between the oldest and the newest sample
   * (about the last {@link TRAFFIC_WINDOW_MS}); empty until two samples exist.
   */
  traffic(): ReleaseTraffic[] {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (first === undefined || last === undefined || last.at <= first.at) return [];
    const seconds = (last.at - first.at) / 1000;
    return [...last.totals].map(([release, now]) => {
      const before = first.totals.get(release) ?? { requests: 0, responses: 0, errors: 0 };
      const responses = now.responses - before.responses;
      return {
        release,
        rate: Math.max(0, now.requests - before.requests) / seconds,
        errorShare: responses > 0 ? Math.max(0, now.errors - before.errors) / responses : null,
        windowS: Math.round(seconds),
      };
    });
  }

  /** Drops the oldest releases with no worker alive, past {@link KEEP_GONE_RELEASES}. */
  private prune(alive: Set<string>): void {
    const idle = [...this.gone.keys()].filter((name) => !alive.has(name));
    for (const name of idle.slice(0, Math.max(0, idle.length - KEEP_GONE_RELEASES))) {
      this.gone.delete(name);
    }
  }
}
