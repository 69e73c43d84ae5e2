import { describe, expect, it } from 'vitest';
import { type ArchiveEntry, entryProblem, stripOf } from '../../src/release/archive-entries.js';

const file = (path: string): ArchiveEntry => ({ path, type: 'File', linkpath: '' });
const dir = (path: string): ArchiveEntry => ({ path, type: 'Directory', linkpath: '' });
const symlink = (path: string, linkpath: string): ArchiveEntry => ({
  path,
  type: 'SymbolicLink',
  linkpath,
});
const hardlink = (path: string, linkpath: string): ArchiveEntry => ({
  path,
  type: 'Link',
  linkpath,
});

describe('stripOf: where the release starts inside an archive', () => {
  it('takes the files at the root as the release', () => {
    expect(stripOf([dir('./'), file('./package.json'), file('./index.js')])).toBe(0);
    expect(stripOf([file('package.json')])).toBe(0);
  });

  it("takes one top directory's contents as the release (tar czf v2.tar.gz v2/, npm pack)", () => {
    expect(stripOf([dir('v2/'), file('v2/package.json'), file('v2/lib/a.js')])).toBe(1);
    expect(stripOf([file('package/package.json'), file('package/index.js')])).toBe(1);
  });

  it('strips nothing when the one top entry is a file or there are two tops', () => {
    expect(stripOf([file('index.js')])).toBe(0);
    expect(stripOf([file('a/package.json'), file('b/index.js')])).toBe(0);
    expect(stripOf([])).toBe(0);
  });
});

describe('entryProblem: what may not be unpacked into a release', () => {
  it('lets files, directories and links that stay inside through', () => {
    for (const entry of [
      file('index.js'),
      dir('lib/'),
      file('./lib/a.js'),
      symlink('node_modules/.bin/tsc', '../typescript/bin/tsc'),
      symlink('current-config', 'config/production.json'),
      hardlink('lib/b.js', 'lib/a.js'),
    ]) {
      expect(entryProblem(entry, 0), entry.path).toBeUndefined();
    }
    expect(entryProblem(symlink('v2/lib/x', '../index.js'), 1)).toBeUndefined();
    expect(entryProblem(hardlink('v2/b.js', 'v2/a.js'), 1)).toBeUndefined();
  });

  it('refuses ".." and absolute paths', () => {
    expect(entryProblem(file('../evil.js'), 0)).toMatch(/"\.\.\/evil\.js" holds "\.\."/);
    expect(entryProblem(file('lib/../../evil.js'), 0)).toMatch(/holds "\.\."/);
    expect(entryProblem(file('/etc/cron.d/evil'), 0)).toMatch(/is an absolute path/);
    expect(entryProblem(file('C:/evil'), 0)).toMatch(/is an absolute path/);
  });

  it('refuses symlinks and hard links that lead outside the release', () => {
    expect(entryProblem(symlink('config', '/etc'), 0)).toMatch(
      /symlink to the absolute path "\/etc"/,
    );
    expect(entryProblem(symlink('lib/up', '../../outside'), 0)).toMatch(
      /symlink leading outside the release/,
    );
    expect(entryProblem(symlink('up', '..'), 0)).toMatch(/leading outside/);
    // Inside the archive, but outside the release once its top directory is stripped.
    expect(entryProblem(symlink('v2/up', '../other'), 1)).toMatch(/leading outside/);
    expect(entryProblem(hardlink('passwd', '/etc/passwd'), 0)).toMatch(
      /hard link to the absolute path/,
    );
    expect(entryProblem(hardlink('x', '../outside'), 0)).toMatch(/hard link leading outside/);
    expect(entryProblem(hardlink('v2/x', 'other/file'), 1)).toMatch(/hard link leading outside/);
  });

  it('refuses devices, FIFOs and other special files', () => {
    expect(entryProblem({ path: 'dev/sda', type: 'BlockDevice', linkpath: '' }, 0)).toMatch(
      /is a block device, not a file, directory or link/,
    );
    expect(entryProblem({ path: 'tty', type: 'CharacterDevice', linkpath: '' }, 0)).toMatch(
      /character device/,
    );
    expect(entryProblem({ path: 'pipe', type: 'FIFO', linkpath: '' }, 0)).toMatch(/fifo/i);
  });
});
