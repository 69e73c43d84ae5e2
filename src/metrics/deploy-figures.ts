import { readJournal, readOutcomes } from '../journal/journal.js';
import { isAlive } from '../process/alive.js';
import type { DeployFigures } from './exposition.js';

/**
 * What the app root's deploy records say, read at each scrape: finished deploys by outcome
 * (`.prefork/deploys.json`, kept across masters, so the counter never resets) and the step of
 * a deploy running now (`.prefork/deploy.json`, whose process must be alive).
 */
export function readDeployFigures(root: string): DeployFigures {
  const counts = readOutcomes(root);
  const journal = readJournal(root);
  const running = journal?.outcome === 'running' && isAlive(journal.pid);
  return {
    outcomes: {
      succeeded: counts.done,
      rolled_back: counts['rolled-back'],
      incomplete: counts['rollback-incomplete'],
    },
    inFlight:
      running && journal !== undefined
        ? { kind: journal.kind, release: journal.release, step: journal.step }
        : undefined,
  };
}
