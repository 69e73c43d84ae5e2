import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import semver from 'semver';
import { readHistory } from '../../deploy/journal.js';
import { messageOf } from '../../errors/index.js';
import { RELEASES_DIR } from '../../protocol/index.js';
import { readCurrentTarget } from '../../release/current-link.js';
import { readRelease } from '../../release/read-release.js';
import { addRootOptions } from '../options.js';

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
    .option('--json', 'print one JSON document');
  addRootOptions(command);
  command.action((options: Record<string, unknown>) => {
    const root = resolve(String(options.root));
    const dir = join(root, RELEASES_DIR);
    const current = readCurrentTarget(root)?.replace(/\/$/, '').split('/').pop();
    const history = readHistory(root);
    let names: string[] = [];
    try {
      names = readdirSync(dir).filter((n) => statSync(join(dir, n)).isDirectory());
    } catch {
      names = [];
    }
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
      const va = semver.valid(a.version ?? '');
      const vb = semver.valid(b.version ?? '');
      if (va && vb && va !== vb) return semver.compare(va, vb);
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
}
