import { posix } from 'node:path';

/** One entry of a release archive, as its header gives it. */
export interface ArchiveEntry {
  /** Path as stored (`v2/index.js`, `./index.js`). */
  path: string;
  /** node-tar's entry type: `File`, `Directory`, `SymbolicLink`, `Link`, `CharacterDevice`... */
  type: string;
  /** A link's target: relative to the link's directory (symlink) or to the archive (hard link). */
  linkpath: string;
}

/** The entry types a release may hold; devices, FIFOs and the rest are refused. */
const ALLOWED_TYPES = new Set([
  'File',
  'OldFile',
  'ContiguousFile',
  'Directory',
  'SymbolicLink',
  'Link',
]);

/** An entry's path without a leading `./`; `''` for the archive's root itself. */
function normalized(path: string): string {
  const clean = posix.normalize(path.replaceAll('\\', '/')).replace(/\/+$/, '');
  return clean === '.' ? '' : clean.replace(/^(\.\/)+/, '');
}

/** Whether a normalized relative path climbs out of the directory it is relative to. */
function climbsOut(path: string): boolean {
  return path === '..' || path.startsWith('../');
}

/** Whether a path, as stored, is absolute (`/etc/passwd`, `C:/x`, `\\server\share`). */
function isAbsolute(path: string): boolean {
  return /^([/\\]|[A-Za-z]:)/.test(path);
}

/**
 * How many leading path components to strip: 1 when every entry lies inside one top
 * directory (`tar czf v2.tar.gz v2/`, `npm pack`'s `package/`), so the release is that
 * directory's contents; 0 when the files sit at the archive's root (`tar czf v2.tar.gz -C v2 .`).
 */
export function stripOf(entries: readonly ArchiveEntry[]): 0 | 1 {
  const paths = entries.map((e) => normalized(e.path)).filter((p) => p !== '');
  if (paths.length === 0) return 0;
  const top = paths[0]?.split('/')[0];
  const oneTop = paths.every((p) => p === top || p.startsWith(`${top}/`));
  const topIsDir = entries.every((e) => normalized(e.path) !== top || e.type === 'Directory');
  return oneTop && topIsDir && paths.some((p) => p !== top) ? 1 : 0;
}

/**
 * Why `entry` may not be unpacked into a release, or undefined when it may: a path that is
 * absolute or holds `..`, a symbolic or hard link whose target lies outside the release (once
 * `strip` leading components are dropped), or a type other than file, directory or link.
 */
export function entryProblem(entry: ArchiveEntry, strip: 0 | 1): string | undefined {
  const { path, type, linkpath } = entry;
  if (isAbsolute(path)) return `"${path}" is an absolute path`;
  if (path.replaceAll('\\', '/').split('/').includes('..')) return `"${path}" holds ".."`;
  if (!ALLOWED_TYPES.has(type)) {
    const kind = type.replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
    return `"${path}" is a ${kind}, not a file, directory or link`;
  }
  if (type !== 'SymbolicLink' && type !== 'Link') return undefined;
  const what = type === 'Link' ? 'hard link' : 'symlink';
  if (isAbsolute(linkpath)) return `"${path}" is a ${what} to the absolute path "${linkpath}"`;
  const inRelease = (p: string) => normalized(p).split('/').slice(strip).join('/');
  // A symlink's target is relative to its own directory; a hard link's to the archive's root.
  const target =
    type === 'Link'
      ? normalized(linkpath)
      : posix.normalize(posix.join(posix.dirname(inRelease(path)) || '.', linkpath));
  const top = normalized(path).split('/')[0];
  const escapes =
    type === 'Link'
      ? target.split('/').includes('..') || (strip === 1 && !target.startsWith(`${top}/`))
      : climbsOut(target);
  return escapes ? `"${path}" is a ${what} leading outside the release ("${linkpath}")` : undefined;
}
