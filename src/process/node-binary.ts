import { spawnSync } from 'node:child_process';
import semverSatisfies from 'semver/functions/satisfies.js';
import semverValid from 'semver/functions/valid.js';
import { UsageError } from '../errors/index.js';
import { PREFORK_NODE_RANGE } from '../protocol/version.js';

/** How long a Node executable may take to say its version. */
const VERSION_MS = 10_000;

/**
 * Runs the Node executable at `path` (the `node` setting) to ask its version, and checks that
 * prefork runs on it. Returns the version (`v22.11.0`); throws a {@link UsageError} naming the
 * setting, the cause and the fix when it does not run or is too old.
 */
export function checkNode(path: string): string {
  const result = spawnSync(path, ['-p', 'process.version'], {
    encoding: 'utf8',
    timeout: VERSION_MS,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const fix = 'point --node (or "node" in the config file) at a Node executable';
  if (result.error !== undefined) {
    const code = (result.error as NodeJS.ErrnoException).code ?? result.error.message;
    throw new UsageError(`node ${path} cannot be run (${code}): ${fix}`);
  }
  const version = (result.stdout ?? '').trim();
  if (result.status !== 0 || semverValid(version) === null) {
    const said = (result.stderr ?? '').trim().split('\n')[0] || version || `exit ${result.status}`;
    throw new UsageError(`node ${path} did not say its version (${said}): ${fix}`);
  }
  if (!semverSatisfies(version, PREFORK_NODE_RANGE)) {
    throw new UsageError(
      `node ${path} is ${version}, but prefork needs Node ${PREFORK_NODE_RANGE}: ${fix} that satisfies it`,
    );
  }
  return version;
}
