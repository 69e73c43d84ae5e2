import { join } from 'node:path';
import type { CanaryRecord } from '../canary/verdict.js';
import { HISTORY_FILE, JOURNAL_FILE, OUTCOMES_FILE } from '../protocol/files.js';
import { writeFileAtomic } from '../state/atomic-write.js';
import { readJsonNoFollow } from '../state/safe-path.js';
import { ensureStateDir } from '../state/state-dir.js';

/** The steps of a deploy (docs/deploy.md), journaled before each is taken. */
type DeployStep =
  | 'preflight'
  | 'activate'
  | 'usr2'
  | 'wait-ready'
  | 'verify'
  | 'canary'
  | 'full-count'
  | 'retire-old'
  | 'winch'
  | 'verify-window'
  | 'quit-old';

/** A step of the journal: a deploy step, or where a rollback got to. */
export type JournalStep = DeployStep | 'rollback' | 'done';

/**
 * What a run of the deploy flow does: `deploy` a release, `rollback` to the previous one, or
 * `upgrade` the masters (prefork itself, Node) on the release they run, `current` untouched.
 */
export type DeployKind = 'deploy' | 'rollback' | 'upgrade';

/** The deploy in progress (or the last one), as `.prefork/deploy.json` holds it. */
export interface Journal {
  kind: DeployKind;
  /** Release being deployed (directory name) and its real path. */
  release: string;
  releaseDir: string;
  version: string;
  /** Release `current` pointed at before (directory name), to go back to. */
  previous: string | undefined;
  oldPid: number;
  newPid: number | undefined;
  /** The old master's worker count when the deploy started: an undo brings it back to it. */
  oldWorkers?: number | undefined;
  /** A canary deploy: each step's verdict and figures, as they were judged. */
  canary?: CanaryRecord[] | undefined;
  step: JournalStep;
  /** `running` until the deploy ends; then how it ended. */
  outcome: 'running' | 'done' | 'rolled-back' | 'rollback-incomplete';
  error: string | undefined;
  /** Deploying process, to tell a killed deploy from a running one. */
  pid: number;
  startedAt: string;
  steps: { step: JournalStep; at: string }[];
}

/** One successful deploy, as `.prefork/history.json` lists them (oldest first). */
export interface HistoryEntry {
  release: string;
  version: string;
  previous: string | undefined;
  kind: DeployKind;
  /** The prefork version and Node of the new master (an `upgrade` changes only these). */
  preforkVersion?: string | undefined;
  node?: string | undefined;
  at: string;
}

const JOURNAL = JOURNAL_FILE;
const HISTORY = HISTORY_FILE;
const OUTCOMES = OUTCOMES_FILE;

/** How a deploy or rollback ended, as `.prefork/deploys.json` counts them. */
export type FinishedOutcome = Exclude<Journal['outcome'], 'running'>;

/** Deploys and rollbacks of an app root by how they ended, since its first. */
export type OutcomeCounts = Record<FinishedOutcome, number>;

/** Reads the journal of the last deploy in `root`, if any. */
export function readJournal(root: string): Journal | undefined {
  return readJsonNoFollow<Journal>(join(root, '.prefork', JOURNAL));
}

/** Writes the journal atomically (it is the record a killed deploy leaves behind). */
export function writeJournal(root: string, journal: Journal): void {
  writeFileAtomic(join(ensureStateDir(root), JOURNAL), `${JSON.stringify(journal, null, 2)}\n`);
}

/** Records that `journal` is about to take `step`, before it is taken. */
export function journalStep(root: string, journal: Journal, step: JournalStep): void {
  journal.step = step;
  journal.steps.push({ step, at: new Date().toISOString() });
  writeJournal(root, journal);
}

/** The deploy history, oldest first. */
export function readHistory(root: string): HistoryEntry[] {
  return (
    readJsonNoFollow<{ deploys: HistoryEntry[] }>(join(root, '.prefork', HISTORY))?.deploys ?? []
  );
}

/** Appends a successful deploy to the history (the last 100 are kept). */
export function appendHistory(root: string, entry: HistoryEntry): void {
  const deploys = [...readHistory(root), entry].slice(-100);
  writeFileAtomic(join(ensureStateDir(root), HISTORY), `${JSON.stringify({ deploys }, null, 2)}\n`);
}

/** How many deploys and rollbacks of `root` ended each way (`prefork_deploys_total`). */
export function readOutcomes(root: string): OutcomeCounts {
  const counts = readJsonNoFollow<Partial<OutcomeCounts>>(join(root, '.prefork', OUTCOMES)) ?? {};
  const count = (n: unknown) => (typeof n === 'number' && Number.isInteger(n) && n >= 0 ? n : 0);
  return {
    done: count(counts.done),
    'rolled-back': count(counts['rolled-back']),
    'rollback-incomplete': count(counts['rollback-incomplete']),
  };
}

/**
 * Counts a finished deploy or rollback. The deploy lock is held, so no other deploy writes
 * at the same time; the file is replaced atomically, so a master reading it never sees half.
 */
export function countOutcome(root: string, outcome: FinishedOutcome): void {
  const counts = readOutcomes(root);
  counts[outcome] += 1;
  writeFileAtomic(join(ensureStateDir(root), OUTCOMES), `${JSON.stringify(counts, null, 2)}\n`);
}
