import type { Config } from '../config/schema.js';
import type { MasterStatus } from '../control/schema.js';
import { type Journal, type JournalStep, journalStep } from '../journal/journal.js';
import type { HealthTarget } from '../probes/health.js';
import type { Release } from '../release/read-release.js';
import type { Reporter } from '../report/reporter.js';

/** The state a deploy carries from step to step. */
export interface DeployContext {
  config: Config;
  release: Release;
  old: MasterStatus;
  journal: Journal;
  reporter: Reporter;
  newPid: number | undefined;
  health: HealthTarget | undefined;
  /** The prefork version the new master reports, once it serves alone. */
  preforkVersion?: string | undefined;
  /** A canary deploy: the new release's worker count at each step. */
  canarySteps: number[] | undefined;
  /** Aborted by Ctrl-C or TERM: every wait of the deploy ends and it rolls back. */
  signal: AbortSignal;
}

/** Runs one step of the deploy: journaled before it is taken, then reported. */
export async function step(
  ctx: DeployContext,
  id: JournalStep & string,
  title: string,
  run: () => Promise<void>,
): Promise<void> {
  journalStep(ctx.config.root, ctx.journal, id);
  await ctx.reporter.step(id, title, run);
}

/** The new master's pid, once USR2 started one. */
export function newPidOf(ctx: DeployContext): number {
  if (ctx.newPid === undefined) throw new Error('no new master was started');
  return ctx.newPid;
}
