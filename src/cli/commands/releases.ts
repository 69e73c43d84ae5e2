import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import semverCompare from 'semver/functions/compare.js';
import semverValid from 'semver/functions/valid.js';
import { loadConfig } from '../../config/load.js';
import { messageOf, UsageError } from '../../errors/index.js';
import { readHistory } from '../../journal/journal.js';
import { RELEASES_DIR } from '../../protocol/files.js';
import { readRelease } from '../../release/read-release.js';
import { currentReleaseName, releaseNames } from '../../release/release-names.js';
import { addRootOptions, configSources, integer } from '../options.js';

/** One line of `prefork releases`. */
interface ReleaseRow {
  name: string;
  version: string | null;
  current: boolean;
  deployed: string | null;
  problem: string | null;
}

/** Registers `prefork releases [--json]`. */
export function registerReleases(program: Command): void {
  const command = program
    .command('releases')
    .description('list the releases in the root: which is current, which were deployed and when')
    .option('--json', 'print one JSON document')
    // `releases prune --root X`: the options after "prune" are prune's own.
    .enablePositionalOptions();
  addRootOptions(command);
  command.action((options: Record<string, unknown>) => {
    const root = resolve(String(options.root));
    const dir = join(root, RELEASES_DIR);
    const current = currentReleaseName(root);
    const history = readHistory(root);
    const names = releaseNames(root);
    const rows: ReleaseRow[] = names.map((name) => {
      let version: string | null = null;
      let problem: string | null = null;
      try {
        version = readRelease(join(dir, name)).version;
      } catch (error) {
        problem = messageOf(error);
      }
      const last = history.filter((h) => h.release === name).at(-1);
      return { name, version, current: name === current, deployed: last?.at ?? null, problem };
    });
    rows.sort((a, b) => {
      const va = semverValid(a.version ?? '');
      const vb = semverValid(b.version ?? '');
      if (va && vb && va !== vb) return semverCompare(va, vb);
      return a.name.localeCompare(b.name);
    });
    if (options.json) {
      process.stdout.write(`${JSON.stringify({ root, releases: rows, history }, null, 2)}\n`);
      return;
    }
    if (rows.length === 0) process.stdout.write(`no releases in ${dir}\n`);
    for (const row of rows) {
      const flags = [row.current ? 'current' : '', row.deployed ? `deployed ${row.deployed}` : '']
        .filter(Boolean)
        .join(', ');
      process.stdout.write(
        `${row.current ? '*' : ' '} ${row.name.padEnd(16)} ${(row.version ?? '-').padEnd(10)} ${flags}${row.problem ? ` (${row.problem})` : ''}\n`,
      );
    }
  });
  registerPrune(command);
}

/** Registers `prefork releases prune --keep N [--dry-run] [--json]`. */
function registerPrune(releases: Command): void {
  const command = releases
    .command('prune')
    .description(
      'remove the oldest releases beyond --keep; never current, the rollback target, or one a live master runs',
    )
    .requiredOption(
      '--keep <n>',
      'how many of the most recent releases to keep (at least 1)',
      integer,
    )
    .option('--dry-run', 'say what would be removed, remove nothing')
    .option('--json', 'one JSON event per line');
  addRootOptions(command);
  command.action(async (options: Record<string, unknown>) => {
    const config = loadConfig(configSources(options));
    const keep = options.keep as number;
    if (keep < 1) {
      throw new UsageError(`--keep ${keep}: keep at least 1 release (the newest)`);
    }
    const { createReporter } = await import('../../report/reporter.js');
    const { takeDeployLock } = await import('../../journal/lock.js');
    const { planPrune, removeRelease, removeStaleStaging } = await import('../../release/prune.js');
    const reporter = await createReporter('prune', Boolean(options.json));
    // A deploy or rollback may be about to point current at any release: wait for none.
    const lock = await takeDeployLock(config.root);
    try {
      const rows = await planPrune(config.root, config.pid, keep);
      let removed = 0;
      for (const row of rows) {
        const fields = { event: 'prune', release: row.name, action: row.action, at: row.at };
        if (row.action === 'remove' && options.dryRun !== true) {
          removeRelease(config.root, row.name);
          removed += 1;
        }
        const said = {
          keep: 'kept',
          protect: `kept: ${row.why}`,
          remove: options.dryRun === true ? 'would be removed' : 'removed',
        }[row.action];
        reporter.info(`${row.name} (${row.at}): ${said}`, {
          ...fields,
          ...(row.why === undefined ? {} : { why: row.why }),
        });
      }
      const where = join(config.root, RELEASES_DIR);
      if (options.dryRun === true) {
        const would = rows.filter((row) => row.action === 'remove').length;
        reporter.info(
          `dry run: ${would} would be removed, ${rows.length - would} kept in ${where}`,
          {
            event: 'pruned',
            dryRun: true,
            removed: 0,
            kept: rows.length,
          },
        );
        return;
      }
      removeStaleStaging(config.root);
      reporter.info(`${removed} removed, ${rows.length - removed} kept in ${where}`, {
        event: 'pruned',
        removed,
        kept: rows.length - removed,
      });
    } finally {
      await lock.release().catch(() => {});
    }
  });
}
