import { spawnSync } from 'node:child_process';
import { UsageError } from '../errors/index.js';
import { SYNTAX_CHECK_MS } from '../wait/timeouts.js';
import type { Release } from './read-release.js';

/**
 * Checks that a Node release's entry module parses (`node --check`), without running it. An
 * exec release's command was checked (exists, executable) when it was read. Deploy's preflight
 * and `prefork install` both run it.
 */
export function checkSyntax(release: Release): void {
  if (release.kind !== 'node') return;
  const result = spawnSync(process.execPath, ['--check', release.entry], {
    encoding: 'utf8',
    timeout: SYNTAX_CHECK_MS,
  });
  if (result.status !== 0) {
    const lines = (result.stderr ?? '').split('\n').filter((l) => l.trim() !== '');
    const error = lines.find((l) => /Error/.test(l)) ?? lines[lines.length - 1] ?? 'does not parse';
    const where = lines[0]?.startsWith(release.entry) ? ` (${lines[0]})` : '';
    throw new UsageError(
      `release ${release.name}: ${release.entry} does not parse${where}: ${error.trim()}`,
    );
  }
}
