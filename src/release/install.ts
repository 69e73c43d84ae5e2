import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
} from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import * as tar from 'tar';
import { messageOf, UsageError } from '../errors/index.js';
import { RELEASES_DIR } from '../protocol/files.js';
import type { Reporter } from '../report/reporter.js';
import { type ArchiveEntry, entryProblem, stripOf } from './archive-entries.js';
import { checkSyntax } from './check-syntax.js';
import { readRelease } from './read-release.js';

/** What `prefork install` is asked to do. */
export interface InstallRequest {
  /** The app root. */
  root: string;
  /** A release archive (`.tar.gz`, `.tgz`, `.tar`) or a release directory, as typed. */
  source: string;
  /** `--name`; by default the archive's name without its extension, or the directory's. */
  name: string | undefined;
  /** The Node that will run the release (`engines.node` is checked against it). */
  nodeVersion: string;
  reporter: Reporter;
}

/** A release `prefork install` put in place. */
export interface Installed {
  name: string;
  version: string;
  kind: 'node' | 'exec';
  /** `<root>/releases/<name>`. */
  dir: string;
}

/** A release name: what a directory in releases/ may be called. */
const RELEASE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$/;

/** Refuses a name that cannot be a directory of releases/ (exit 2). */
export function assertReleaseName(name: string): void {
  if (!RELEASE_NAME.test(name) || name.endsWith('.')) {
    throw new UsageError(
      `release name "${name}" is not usable: a name is letters, digits, ".", "_", "+" and "-", starting with a letter or digit (pass --name)`,
    );
  }
}

/** The release name an archive or directory gives when no `--name` is passed. */
export function defaultName(source: string): string {
  return basename(resolve(source)).replace(/\.(tar\.gz|tgz|tar)$/i, '');
}

/** The entries of a release directory, as an archive of it would hold them. */
function directoryEntries(dir: string): ArchiveEntry[] {
  const entries: ArchiveEntry[] = [];
  const walk = (at: string) => {
    for (const name of readdirSync(join(dir, at))) {
      const path = at === '' ? name : `${at}/${name}`;
      const stat = lstatSync(join(dir, path));
      const type = stat.isDirectory()
        ? 'Directory'
        : stat.isFile()
          ? 'File'
          : stat.isSymbolicLink()
            ? 'SymbolicLink'
            : stat.isCharacterDevice()
              ? 'CharacterDevice'
              : stat.isBlockDevice()
                ? 'BlockDevice'
                : stat.isFIFO()
                  ? 'FIFO'
                  : 'Socket';
      const linkpath = type === 'SymbolicLink' ? readlinkSync(join(dir, path)) : '';
      entries.push({ path, type, linkpath });
      if (type === 'Directory') walk(path);
    }
  };
  walk('');
  return entries;
}

/** The entries of a tar archive (gzipped or not), read without writing anything. */
async function archiveEntries(file: string): Promise<ArchiveEntry[]> {
  const entries: ArchiveEntry[] = [];
  try {
    await tar.t({
      file,
      strict: true,
      onReadEntry: (entry) => {
        entries.push({ path: entry.path, type: entry.type, linkpath: entry.linkpath ?? '' });
      },
    });
  } catch (error) {
    throw new UsageError(
      `${file} is not a readable tar archive (${messageOf(error)}): build it with "tar czf <name>.tar.gz -C <release dir> ." and copy it again`,
      { cause: error },
    );
  }
  return entries;
}

/** Refuses the first entry that may not be unpacked into a release (exit 2). */
function refuseEscapes(source: string, entries: readonly ArchiveEntry[], strip: 0 | 1): void {
  for (const entry of entries) {
    const problem = entryProblem(entry, strip);
    if (problem !== undefined) {
      throw new UsageError(
        `cannot install ${source}: ${problem}; a release may hold only files, directories and links that stay inside it. Nothing was written`,
      );
    }
  }
}

/** After unpacking: every symlink that resolves must resolve inside the release (a chain of links may climb out where each alone does not). */
function assertLinksStayInside(dir: string, source: string): void {
  // The native realpath: the JS one resolves `self/..` lexically, as if `self` were a directory.
  const real = realpathSync.native(dir);
  for (const entry of directoryEntries(dir)) {
    if (entry.type !== 'SymbolicLink') continue;
    let target: string;
    try {
      target = realpathSync.native(join(dir, entry.path));
    } catch {
      continue; // dangling: it leads nowhere
    }
    if (target !== real && !target.startsWith(real + sep)) {
      throw new UsageError(
        `cannot install ${source}: "${entry.path}" is a symlink that resolves outside the release (through "${entry.linkpath}"). Nothing was installed`,
      );
    }
  }
}

/**
 * `prefork install` (docs/fleet.md): unpacks an archive (or copies a directory) into a hidden
 * directory beside `releases/<name>`, checks it as deploy's preflight would, then renames it
 * into place, so a release in releases/ is always whole. An existing name, an entry that would
 * land outside the release, an unreadable archive or a release that fails the check is a
 * {@link UsageError} (exit 2) and leaves releases/ as it was.
 */
export async function installRelease(request: InstallRequest): Promise<Installed> {
  const { root, reporter } = request;
  const source = resolve(request.source);
  if (!existsSync(source)) {
    throw new UsageError(
      `${request.source} does not exist: pass a release archive (.tar.gz) or a release directory`,
    );
  }
  const name = request.name ?? defaultName(source);
  assertReleaseName(name);
  const releasesDir = join(root, RELEASES_DIR);
  const final = join(releasesDir, name);
  const assertFree = () => {
    if (lstatSync(final, { throwIfNoEntry: false }) !== undefined) {
      throw new UsageError(
        `${RELEASES_DIR}/${name} already exists: a release name is never reused; install under another --name, or remove the old one first (prefork releases prune)`,
      );
    }
  };
  assertFree();
  const isDir = statSync(source).isDirectory();
  const entries = await reporter.step('check', `check ${request.source}`, async () => {
    const entries = isDir ? directoryEntries(source) : await archiveEntries(source);
    const strip = isDir ? 0 : stripOf(entries);
    refuseEscapes(request.source, entries, strip);
    return { list: entries, strip };
  });
  mkdirSync(releasesDir, { recursive: true });
  const stage = mkdtempSync(join(releasesDir, `.install-${name}-`));
  const staged = join(stage, name);
  try {
    await reporter.step('unpack', `unpack into ${relative(root, stage)}`, async () => {
      if (isDir) {
        cpSync(source, staged, {
          recursive: true,
          verbatimSymlinks: true,
          preserveTimestamps: true,
        });
      } else {
        mkdirSync(staged);
        // The same check again while unpacking: the archive may have changed since it was read.
        const late: string[] = [];
        await tar.x({
          file: source,
          cwd: staged,
          strip: entries.strip,
          strict: true,
          preserveOwner: false,
          filter: (path, entry) => {
            const type = 'type' in entry ? entry.type : 'File';
            const linkpath = 'linkpath' in entry ? (entry.linkpath ?? '') : '';
            const problem = entryProblem({ path, type, linkpath }, entries.strip);
            if (problem !== undefined) late.push(problem);
            return problem === undefined;
          },
        });
        if (late.length > 0) {
          throw new UsageError(
            `cannot install ${request.source}: ${late[0]} (the archive changed while it was installed). Nothing was installed`,
          );
        }
      }
      assertLinksStayInside(staged, request.source);
    });
    const release = await reporter.step(
      'preflight',
      `check ${RELEASES_DIR}/${name} as deploy's preflight would`,
      async () => {
        try {
          const release = readRelease(staged, request.nodeVersion);
          checkSyntax(release);
          return release;
        } catch (error) {
          const said = messageOf(error)
            .replaceAll(realpathSync(staged), `${RELEASES_DIR}/${name}`)
            .replaceAll(staged, `${RELEASES_DIR}/${name}`);
          throw new UsageError(`cannot install ${request.source}: ${said}. Nothing was installed`, {
            cause: error,
          });
        }
      },
    );
    await reporter.step('rename', `move into ${RELEASES_DIR}/${name}`, async () => {
      assertFree();
      try {
        renameSync(staged, final);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY' || code === 'EEXIST') assertFree();
        throw error;
      }
      // The directory's time is when it was installed: `releases prune` keeps the newest.
      const now = new Date();
      utimesSync(final, now, now);
    });
    return { name, version: release.version, kind: release.kind, dir: final };
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(
      `cannot install ${request.source}: ${messageOf(error)}. Nothing was installed`,
      {
        cause: error,
      },
    );
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}
