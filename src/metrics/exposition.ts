import {
  AggregatorRegistry,
  collectDefaultMetrics,
  type PrometheusContentType,
  Registry,
} from 'prom-client';
import type { MasterMetrics } from '../control/schema.js';
import { histogramOf } from '../figures/figures.js';
import { CONNECTION_COUNT_KINDS } from '../protocol/connections.js';
import { WORKER_EXIT_REASONS } from '../protocol/exits.js';
import { STATUS_CLASSES } from '../protocol/figures.js';
import { MOVE_COUNT_OUTCOMES } from '../protocol/moves.js';

/** A deploy, rollback or upgrade running now: the step it is at (from `.prefork/deploy.json`). */
export interface DeployInFlight {
  kind: 'deploy' | 'rollback' | 'upgrade';
  release: string;
  step: string;
}

/** What the deploy records in the app root say (docs/metrics.md). */
export interface DeployFigures {
  /** Finished deploys and rollbacks by outcome, since the app root's first. */
  outcomes: Record<DeployOutcome, number>;
  inFlight: DeployInFlight | undefined;
}

/** How a deploy ended, as `prefork_deploys_total{outcome}` counts it. */
export const DEPLOY_OUTCOMES = ['succeeded', 'rolled_back', 'incomplete'] as const;
export type DeployOutcome = (typeof DEPLOY_OUTCOMES)[number];

/** One sample: a histogram's `_bucket`, `_sum` and `_count` name theirs. */
interface SeriesValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** A metric as prom-client's `getMetricsAsJSON()` gives it, the form its aggregation takes. */
export interface Series {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram';
  aggregator: 'sum';
  values: SeriesValue[];
}

function series(name: string, help: string, type: Series['type'], values: SeriesValue[]): Series {
  // 'sum': the same series from the two masters of an upgrade add up (prom-client's cluster
  // aggregation); the service-wide ones below exist in one input only.
  return { name, help, type, aggregator: 'sum', values };
}

/**
 * One master's share of the series: its workers by release. Counters start at 0 for every
 * status class and exit reason, so the first one of each is seen as an increase.
 */
export function masterSeries(master: MasterMetrics): Series[] {
  const requests: SeriesValue[] = [];
  const durations: SeriesValue[] = [];
  const workers: SeriesValue[] = [];
  const exits: SeriesValue[] = [];
  const memory: SeriesValue[] = [];
  const connections: SeriesValue[] = [];
  const streams: SeriesValue[] = [];
  const closed: SeriesValue[] = [];
  const drained: SeriesValue[] = [];
  for (const r of master.releases) {
    const release = r.release;
    if (r.kind === 'node') {
      for (const kind of CONNECTION_COUNT_KINDS) {
        connections.push({ labels: { release, kind }, value: r.connections.byKind[kind] ?? 0 });
      }
      streams.push({ labels: { release }, value: r.connections.streams });
      closed.push({ labels: { release }, value: r.closedAtDeadline });
      for (const outcome of MOVE_COUNT_OUTCOMES) {
        drained.push({ labels: { release, outcome }, value: r.drained[outcome] });
      }
    }
    for (const state of ['booting', 'ready', 'draining'] as const) {
      workers.push({ labels: { release, state }, value: r.workers[state] });
    }
    for (const reason of WORKER_EXIT_REASONS) {
      exits.push({ labels: { release, reason }, value: r.exits[reason] ?? 0 });
    }
    memory.push({ labels: { release }, value: r.rss });
    const figures = r.figures;
    if (figures === undefined) continue;
    STATUS_CLASSES.forEach((code, i) => {
      requests.push({ labels: { release, code }, value: figures.codes[i] ?? 0 });
    });
    let cumulative = 0;
    const bucket = 'prefork_http_request_duration_seconds_bucket';
    for (const { le, count } of histogramOf(figures)) {
      cumulative = count;
      durations.push({ labels: { release, le }, value: count, metricName: bucket });
    }
    durations.push({
      labels: { release },
      value: figures.seconds,
      metricName: 'prefork_http_request_duration_seconds_sum',
    });
    durations.push({
      labels: { release },
      value: cumulative,
      metricName: 'prefork_http_request_duration_seconds_count',
    });
  }
  return [
    series(
      'prefork_http_requests_total',
      'Responses of Node workers, by release and status class.',
      'counter',
      requests,
    ),
    series(
      'prefork_http_request_duration_seconds',
      'Time from a request reaching a Node worker to its response handed to the kernel.',
      'histogram',
      durations,
    ),
    series('prefork_workers', 'Workers, by release and state.', 'gauge', workers),
    series(
      'prefork_worker_exits_total',
      'Workers that exited, by release and reason.',
      'counter',
      exits,
    ),
    series(
      'prefork_worker_resident_memory_bytes',
      "Workers' resident memory, summed by release.",
      'gauge',
      memory,
    ),
    series(
      'prefork_connections',
      "Node workers' open client connections, by release and kind (HTTP/1.1 busy or idle, upgraded, HTTP/2 sessions, gRPC, TLS handshakes).",
      'gauge',
      connections,
    ),
    series(
      'prefork_http2_streams',
      "Streams open on Node workers' HTTP/2 sessions, by release.",
      'gauge',
      streams,
    ),
    series(
      'prefork_connections_closed_at_deadline_total',
      'Connections draining Node workers closed because they were still open at the graceful timeout, by release.',
      'counter',
      closed,
    ),
    series(
      'prefork_connections_drained_total',
      "What draining Node workers did with their connections, by release and outcome: moved to the next generation, refused (no worker took it: served again, then closed), lost (a process on the move's way died), closed cleanly, reset.",
      'counter',
      drained,
    ),
  ];
}

/**
 * The master whose release is the service's: the one running (a new master once ready), else
 * the old one while its new master boots.
 */
export function servingMaster(masters: MasterMetrics[]): MasterMetrics | undefined {
  const rank = { running: 3, old: 2, booting: 1, stopping: 0 } as const;
  return [...masters].sort((a, b) => rank[b.state] - rank[a.state])[0];
}

/** Series of the service as a whole: its release, its masters, its deploys. */
export function serviceSeries(masters: MasterMetrics[], deploys: DeployFigures): Series[] {
  const serving = servingMaster(masters);
  const step = deploys.inFlight;
  return [
    series(
      'prefork_release_info',
      'The release the service runs (its serving master’s), always 1.',
      'gauge',
      serving ? [{ labels: { release: serving.release, version: serving.version }, value: 1 }] : [],
    ),
    series(
      'prefork_masters',
      'Masters serving this app root: 2 while an upgrade overlaps them.',
      'gauge',
      [{ labels: {}, value: masters.length }],
    ),
    series(
      'prefork_deploys_total',
      'Finished deploys and rollbacks of this app root, by outcome.',
      'counter',
      DEPLOY_OUTCOMES.map((outcome) => ({ labels: { outcome }, value: deploys.outcomes[outcome] })),
    ),
    series(
      'prefork_deploy_step',
      'The step a running deploy or rollback is at (1), absent when none runs.',
      'gauge',
      step
        ? [{ labels: { kind: step.kind, release: step.release, step: step.step }, value: 1 }]
        : [],
    ),
  ];
}

/**
 * Renders the Prometheus text format with prom-client: the masters' shares summed by its
 * cluster aggregation, the service series, and the answering master's own `process_*` and
 * `nodejs_*` metrics (prom-client's defaults, kept in `own`).
 */
export class Exposition {
  private readonly own = new Registry();

  constructor() {
    // The event loop delay is sampled every 100 ms rather than 10: a master is idle most of
    // the time, and ten times fewer wake-ups keep it so.
    collectDefaultMetrics({ register: this.own, eventLoopMonitoringPrecision: 100 });
    // Gauges named like counters, which `promtool check metrics` rejects; the per-type
    // `nodejs_active_handles` (and _requests, _resources) gauges carry the same counts.
    for (const kind of ['handles', 'requests', 'resources']) {
      this.own.removeSingleMetric(`nodejs_active_${kind}_total`);
    }
  }

  /** The content type of {@link render}'s text. */
  get contentType(): string {
    return this.own.contentType;
  }

  async render(masters: MasterMetrics[], deploys: DeployFigures): Promise<string> {
    // The same order whichever master answers.
    const shares = [...masters].sort((a, b) => a.pid - b.pid).map(masterSeries);
    const aggregated = AggregatorRegistry.aggregate<PrometheusContentType>([
      ...shares,
      serviceSeries(masters, deploys),
    ]);
    return Registry.merge([aggregated, this.own]).metrics();
  }
}
