/**
 * What happened between two snapshots: each generation's requests per second, 5xx share and
 * p99, from the cumulative figures its master reports (the way Prometheus's `rate()` reads the
 * same counters). Pure and free of Node's modules: the live page runs this very file in the
 * browser (served from `dist/`, docs/live-view.md).
 */
import {
  addFigures,
  emptyFigures,
  errorShare,
  figuresSince,
  latencyQuantile,
  responsesIn,
} from '../figures/figures.js';
import type { RequestFigures } from '../protocol/figures.js';
import type { ViewMaster, ViewSnapshot } from './snapshot.js';

/** One release in one master (a generation), between two looks. */
export interface ReleaseRate {
  master: number;
  release: string;
  /** Requests per second; null for a release prefork does not count (an exec release). */
  rate: number | null;
  /** Share of the responses that were 5xx (0–1); null without figures or responses. */
  errorShare: number | null;
  /** 99th percentile latency in seconds; null without figures or responses. */
  p99: number | null;
  /** What was counted between the looks (its figures); undefined without figures. */
  counted: RequestFigures | undefined;
}

/** A master's Node requests of `release` so far, from its workers' own counts (metrics off). */
function requestsOf(master: ViewMaster, release: string): number {
  return master.status.workers
    .filter((w) => w.release === release && w.kind === 'node')
    .reduce((sum, w) => sum + w.requests, 0);
}

/**
 * The master of `before` with `after`'s pid, or, for a master that started since `before`
 * was taken, a master with nothing counted yet (its counters started at 0); undefined when
 * `before` cannot tell (a master that did not answer then).
 */
function previousOf(
  before: ViewSnapshot,
  after: ViewSnapshot,
  master: ViewMaster,
): ViewMaster | 'new' | undefined {
  const found = before.masters.find((m) => m.status.pid === master.status.pid);
  if (found !== undefined) return found;
  const startedMs = after.at - master.status.uptime * 1000;
  return startedMs >= before.at - 1000 ? 'new' : undefined;
}

function rateOf(
  master: ViewMaster,
  release: string,
  previous: ViewMaster | 'new',
  seconds: number,
): ReleaseRate {
  const pid = master.status.pid;
  const share = master.metrics?.releases.find((r) => r.release === release);
  if (share?.kind === 'exec') {
    return { master: pid, release, rate: null, errorShare: null, p99: null, counted: undefined };
  }
  if (share?.figures !== undefined) {
    const earlier =
      previous === 'new'
        ? undefined
        : previous.metrics?.releases.find((r) => r.release === release)?.figures;
    const counted = figuresSince(share.figures, earlier ?? emptyFigures());
    const responses = responsesIn(counted);
    return {
      master: pid,
      release,
      rate: responses / seconds,
      errorShare: responses > 0 ? errorShare(counted) : null,
      p99: latencyQuantile(counted, 0.99) ?? null,
      counted,
    };
  }
  const earlier = previous === 'new' ? 0 : requestsOf(previous, release);
  const requests = Math.max(0, requestsOf(master, release) - earlier);
  return {
    master: pid,
    release,
    rate: requests / seconds,
    errorShare: null,
    p99: null,
    counted: undefined,
  };
}

/** The releases a master runs or ran (its workers', then those only its figures name). */
export function releasesOf(master: ViewMaster): string[] {
  const names = new Set(master.status.workers.map((w) => w.release));
  for (const r of master.metrics?.releases ?? []) names.add(r.release);
  if (names.size === 0) names.add(master.status.release);
  return [...names];
}

/**
 * Each generation's figures between `before` and `after` (empty without `before`, or when
 * they are not in time order).
 */
export function ratesBetween(before: ViewSnapshot | undefined, after: ViewSnapshot): ReleaseRate[] {
  if (before === undefined || after.at <= before.at) return [];
  const seconds = (after.at - before.at) / 1000;
  return after.masters.flatMap((master) => {
    const previous = previousOf(before, after, master);
    if (previous === undefined) return [];
    return releasesOf(master).map((release) => rateOf(master, release, previous, seconds));
  });
}

/** A release's figures summed over its generations (the same release under two masters). */
export interface ReleaseTotal {
  release: string;
  rate: number | null;
  errorShare: number | null;
  p99: number | null;
}

/** {@link ratesBetween}'s rates by release, whichever masters ran it. */
export function byRelease(rates: ReleaseRate[]): ReleaseTotal[] {
  const totals = new Map<string, { rate: number | null; counted: RequestFigures | undefined }>();
  for (const r of rates) {
    const total = totals.get(r.release) ?? { rate: null, counted: undefined };
    if (r.rate !== null) total.rate = (total.rate ?? 0) + r.rate;
    if (r.counted !== undefined) {
      total.counted = addFigures(total.counted ?? emptyFigures(), r.counted);
    }
    totals.set(r.release, total);
  }
  return [...totals].map(([release, { rate, counted }]) => ({
    release,
    rate,
    errorShare: counted !== undefined && responsesIn(counted) > 0 ? errorShare(counted) : null,
    p99: counted === undefined ? null : (latencyQuantile(counted, 0.99) ?? null),
  }));
}

/** One release's figures over a canary step so far. */
export interface FormingSide {
  release: string;
  responses: number;
  errorShare: number | null;
  p99: number | null;
}

/**
 * The canary's verdict as it forms: what each release answered since the current canary step
 * began (as far as this viewer saw it), added up look by look. Starts again at each step.
 */
export class CanaryTally {
  private stepAt: string | undefined;
  private readonly counted = new Map<string, RequestFigures>();

  /** Adds the figures between two looks; `after`'s deploy says which step they belong to. */
  add(after: ViewSnapshot, rates: ReleaseRate[]): void {
    const deploy = after.deploy;
    if (deploy === null || deploy.step !== 'canary') {
      this.stepAt = undefined;
      this.counted.clear();
      return;
    }
    if (deploy.stepAt !== this.stepAt) {
      this.stepAt = deploy.stepAt;
      this.counted.clear();
      return;
    }
    for (const r of rates) {
      if (r.counted === undefined) continue;
      this.counted.set(
        r.release,
        addFigures(this.counted.get(r.release) ?? emptyFigures(), r.counted),
      );
    }
  }

  /** Each release's figures since the step began; empty outside a canary step. */
  sides(): FormingSide[] {
    return [...this.counted].map(([release, figures]) => {
      const responses = responsesIn(figures);
      return {
        release,
        responses,
        errorShare: responses > 0 ? errorShare(figures) : null,
        p99: latencyQuantile(figures, 0.99) ?? null,
      };
    });
  }
}

/**
 * The span a viewer's rates are taken over, at least. Workers report their figures in their
 * heartbeat (once a second by default), so a rate over one second would swing between 0 and
 * twice the truth as heartbeats fall either side of a look; over three seconds they hold.
 */
export const RATE_WINDOW_MS = 3000;

/**
 * A viewer's recent looks: each new one's rates are taken against the latest look at least
 * `windowMs` older (the oldest one kept, until there is such a look).
 */
export class RateWindow {
  private readonly looks: ViewSnapshot[] = [];

  constructor(private readonly windowMs = RATE_WINDOW_MS) {}

  /** Adds a look; returns the rates since the look a window before it. */
  push(snapshot: ViewSnapshot): ReleaseRate[] {
    this.looks.push(snapshot);
    while ((this.looks[1]?.at ?? Number.POSITIVE_INFINITY) <= snapshot.at - this.windowMs) {
      this.looks.shift();
    }
    const base = this.looks[0];
    return base === snapshot ? [] : ratesBetween(base, snapshot);
  }
}
