/**
 * One look at the service, as `prefork top` and the live page at `/` of the metrics bind read
 * it (docs/live-view.md): each master with its status and its share of the figures, and the
 * deploy running now. The page fetches it as JSON (`GET /view.json`); its `format` says which
 * shape it is, so a page served by one master can tell a snapshot it cannot read.
 */
import type { CanaryRecord } from '../canary/verdict.js';
import type { MasterMetrics, MasterStatus } from '../control/schema.js';
import type { DeployKind, Journal, JournalStep } from '../journal/journal.js';

/** The shape of {@link ViewSnapshot} (bumped when a field changes meaning or goes away). */
export const VIEW_FORMAT = 1;

/** One master (a generation): what `status` tells and its share of the figures. */
export interface ViewMaster {
  status: MasterStatus;
  /** Its workers' figures by release; null when it did not answer for them. */
  metrics: MasterMetrics | null;
}

/** A deploy, rollback or upgrade running now (`.prefork/deploy.json`, its process alive). */
export interface ViewDeploy {
  kind: DeployKind;
  release: string;
  version: string;
  previous: string | null;
  step: JournalStep;
  startedAt: string;
  /** When the current step began (ISO time). */
  stepAt: string;
  /** A canary deploy's steps judged so far. */
  canary: CanaryRecord[];
}

export interface ViewSnapshot {
  format: typeof VIEW_FORMAT;
  /** When it was taken (`Date.now()`). */
  at: number;
  root: string;
  /** The serving master first, then the other master of an upgrade in flight. */
  masters: ViewMaster[];
  deploy: ViewDeploy | null;
}

/** The deploy in flight a journal tells of, if its process still runs it. */
export function deployInFlight(journal: Journal | undefined, alive: boolean): ViewDeploy | null {
  if (journal === undefined || journal.outcome !== 'running' || !alive) return null;
  return {
    kind: journal.kind,
    release: journal.release,
    version: journal.version,
    previous: journal.previous ?? null,
    step: journal.step,
    startedAt: journal.startedAt,
    stepAt: journal.steps.at(-1)?.at ?? journal.startedAt,
    canary: journal.canary ?? [],
  };
}

/** How much a master's state says it serves: the serving master sorts first. */
const SERVING_RANK = { running: 3, old: 2, booting: 1, stopping: 0 } as const;

/** The masters in the order a viewer shows them: the serving one first, then by pid. */
export function inServingOrder(masters: ViewMaster[]): ViewMaster[] {
  return [...masters].sort(
    (a, b) =>
      SERVING_RANK[b.status.state] - SERVING_RANK[a.status.state] || a.status.pid - b.status.pid,
  );
}
