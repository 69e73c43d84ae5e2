import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import semverSatisfies from 'semver/functions/satisfies.js';
import semverValid from 'semver/functions/valid.js';
import semverValidRange from 'semver/ranges/valid.js';
import { UsageError } from '../errors/index.js';
import { EXEC_RELEASE_FILE, RELEASES_DIR } from '../protocol/files.js';
import { type ExecSpec, readExecSpec } from './exec-release.js';

/** What every release has, whatever runs it. */
interface ReleaseBase {
  /** Real path of the release directory. */
  dir: string;
  /** Directory name, as titles and logs show it (`v2`). */
  name: string;
  /** `package.json` (or `prefork.json`) version, or the directory name when it has none. */
  version: string;
}

/** A Node release: an app module prefork loads in its own worker (README, "Quick start"). */
export interface NodeRelease extends ReleaseBase {
  kind: 'node';
  /** Absolute path of the entry module. */
  entry: string;
  /** `engines.node`, when the release declares one. */
  enginesNode: string | undefined;
}

/** An exec release: any executable, given the sockets the systemd way (`prefork.json`). */
export interface ExecRelease extends ReleaseBase {
  kind: 'exec';
  exec: ExecSpec;
}

/** A release directory, checked against the app contract. */
export type Release = NodeRelease | ExecRelease;

interface PackageJson {
  version?: unknown;
  main?: unknown;
  prefork?: { app?: unknown };
  engines?: { node?: unknown };
}

/**
 * Reads the release at `dir` and checks it. With a `prefork.json`, an exec release whose
 * command exists and is executable; otherwise a directory with a `package.json`, an entry module
 * that exists (`prefork.app`, else `main`, else `index.js`) and an `engines.node` range that
 * `nodeVersion` satisfies. Every failure is a {@link UsageError} naming the cause and the fix.
 */
export function readRelease(dir: string, nodeVersion: string = process.version): Release {
  if (!existsSync(dir)) {
    throw new UsageError(`release ${dir} does not exist: create it under ${RELEASES_DIR}/`);
  }
  const real = realpathSync(dir);
  if (!statSync(real).isDirectory()) {
    throw new UsageError(`release ${dir} is not a directory`);
  }
  const exec = readExecSpec(real, basename(real));
  if (exec !== undefined) {
    return {
      kind: 'exec',
      dir: real,
      name: basename(real),
      version: exec.version ?? basename(real),
      exec: exec.spec,
    };
  }
  const pkgPath = join(real, 'package.json');
  if (!existsSync(pkgPath)) {
    throw new UsageError(
      `release ${dir} has no package.json: add one with "version" and "main" (or "prefork": {"app": ...}), or a ${EXEC_RELEASE_FILE} naming the "command" of any other server`,
    );
  }
  let pkg: PackageJson;
  try {
    pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as PackageJson;
  } catch (error) {
    throw new UsageError(`${pkgPath} is not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const name = basename(real);
  const version = typeof pkg.version === 'string' && semverValid(pkg.version) ? pkg.version : name;
  const declared =
    typeof pkg.prefork?.app === 'string'
      ? pkg.prefork.app
      : typeof pkg.main === 'string'
        ? pkg.main
        : 'index.js';
  const entry = resolve(real, declared);
  if (entry !== real && !entry.startsWith(real + sep)) {
    throw new UsageError(`release ${dir}: entry "${declared}" points outside the release`);
  }
  if (!existsSync(entry) || !statSync(entry).isFile()) {
    throw new UsageError(
      `release ${dir} has no entry module ${relative(real, entry) || declared}: set "main" or "prefork.app" in its package.json to the file that exports the app`,
    );
  }
  const range = typeof pkg.engines?.node === 'string' ? pkg.engines.node : undefined;
  if (range !== undefined) {
    if (semverValidRange(range) === null) {
      throw new UsageError(`release ${dir}: engines.node "${range}" is not a valid semver range`);
    }
    if (!semverSatisfies(nodeVersion, range)) {
      throw new UsageError(
        `release ${dir} needs Node ${range} (engines.node) but this Node is ${nodeVersion}: run it with a Node that satisfies the range, or change engines.node`,
      );
    }
  }
  return { kind: 'node', dir: real, name, version, entry, enginesNode: range };
}

/**
 * Resolves a release named on the command line (`releases/v2`, `./releases/v2`, `v2` or an
 * absolute path) inside `root`, refusing anything outside `<root>/releases/`, then reads it.
 */
export function readReleaseInRoot(
  root: string,
  arg: string,
  nodeVersion: string = process.version,
): Release {
  const releasesDir = resolve(root, RELEASES_DIR);
  const candidates = [resolve(arg), resolve(root, arg), resolve(releasesDir, arg)];
  const dir =
    candidates.find((c) => c.startsWith(releasesDir + sep) && existsSync(c)) ??
    candidates.find((c) => c.startsWith(releasesDir + sep));
  if (dir === undefined) {
    throw new UsageError(
      `release "${arg}" is not inside ${releasesDir}/: put each release in its own directory there`,
    );
  }
  if (relative(releasesDir, dir).includes(sep)) {
    throw new UsageError(
      `release "${arg}" is nested below ${releasesDir}/: name a directory directly in releases/`,
    );
  }
  const release = readRelease(dir, nodeVersion);
  const realReleases = existsSync(releasesDir) ? realpathSync(releasesDir) : releasesDir;
  if (!release.dir.startsWith(realReleases + sep)) {
    throw new UsageError(`release "${arg}" resolves outside ${releasesDir}/ (through a symlink)`);
  }
  return release;
}
