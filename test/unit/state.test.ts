import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CrashBackoff } from '../../src/master/crash-backoff.js';
import { pointCurrent } from '../../src/release/current-link.js';
import { readRelease, readReleaseInRoot } from '../../src/release/read-release.js';
import {
  movePidfileIfOurs,
  readPidfile,
  removePidfileIfOurs,
  writePidfile,
} from '../../src/state/pidfile.js';
import { ensureStateDir } from '../../src/state/state-dir.js';

/** Every directory a test made, removed after it. */
const dirs: string[] = [];
const dir = () => {
  const made = mkdtempSync(join(tmpdir(), 'prefork-state-'));
  dirs.push(made);
  return made;
};
afterEach(() => {
  for (const made of dirs.splice(0)) rmSync(made, { recursive: true, force: true });
});

describe('pidfile', () => {
  it('is written atomically, owner-only, and removed only while it holds our pid', () => {
    const d = dir();
    const path = join(d, 'prefork.pid');
    writePidfile(path, 1234);
    expect(readFileSync(path, 'utf8')).toBe('1234\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(removePidfileIfOurs(path, 99)).toBe(false);
    expect(readPidfile(path)).toBe(1234);
    expect(movePidfileIfOurs(path, `${path}.oldbin`, 1234)).toBe(true);
    expect(readPidfile(`${path}.oldbin`)).toBe(1234);
    expect(removePidfileIfOurs(`${path}.oldbin`, 1234)).toBe(true);
    expect(readPidfile(`${path}.oldbin`)).toBeUndefined();
  });

  it('is neither written nor read through a symlink', () => {
    const d = dir();
    writeFileSync(join(d, 'target'), '42\n');
    symlinkSync(join(d, 'target'), join(d, 'prefork.pid'));
    expect(readPidfile(join(d, 'prefork.pid'))).toBeUndefined();
    expect(() => writePidfile(join(d, 'prefork.pid'), 1)).toThrow(/is a symlink/);
    expect(readFileSync(join(d, 'target'), 'utf8')).toBe('42\n');
  });

  it('refuses a world-writable directory without the sticky bit', () => {
    const d = dir();
    mkdirSync(join(d, 'open'));
    chmodSync(join(d, 'open'), 0o777);
    expect(() => writePidfile(join(d, 'open', 'prefork.pid'), 1)).toThrow(
      /world-writable without the sticky bit/,
    );
  });
});

describe('state directory', () => {
  it('is created 0700 and a symlink in its place is refused', () => {
    const d = dir();
    expect(statSync(ensureStateDir(d)).mode & 0o777).toBe(0o700);
    const e = dir();
    mkdirSync(join(e, 'elsewhere'));
    symlinkSync(join(e, 'elsewhere'), join(e, '.prefork'));
    expect(() => ensureStateDir(e)).toThrow(/not a directory \(a symlink\?\)/);
  });
});

describe('releases', () => {
  it('reads version and entry from package.json', () => {
    const d = dir();
    mkdirSync(join(d, 'releases/r1'), { recursive: true });
    writeFileSync(
      join(d, 'releases/r1/package.json'),
      JSON.stringify({ version: '1.2.3', prefork: { app: 'srv.mjs' }, main: 'x.js' }),
    );
    writeFileSync(join(d, 'releases/r1/srv.mjs'), '');
    const release = readReleaseInRoot(d, 'releases/r1');
    expect(release.version).toBe('1.2.3');
    expect(release.kind === 'node' && release.entry).toBe(join(release.dir, 'srv.mjs'));
    expect(readReleaseInRoot(d, 'r1').dir).toBe(release.dir);
  });

  it('falls back to the directory name when there is no semver version', () => {
    const d = dir();
    mkdirSync(join(d, 'r2'));
    writeFileSync(join(d, 'r2/package.json'), '{}');
    writeFileSync(join(d, 'r2/index.js'), '');
    expect(readRelease(join(d, 'r2')).version).toBe('r2');
  });

  it('refuses an entry outside the release and releases nested or outside releases/', () => {
    const d = dir();
    mkdirSync(join(d, 'releases/r3/sub'), { recursive: true });
    writeFileSync(join(d, 'releases/r3/package.json'), JSON.stringify({ main: '../../x.js' }));
    expect(() => readReleaseInRoot(d, 'r3')).toThrow(/points outside the release/);
    expect(() => readReleaseInRoot(d, 'releases/r3/sub')).toThrow(/nested below/);
    expect(() => readReleaseInRoot(d, '../..')).toThrow(/is not inside/);
  });

  it('swaps current atomically to a relative link', () => {
    const d = dir();
    mkdirSync(join(d, 'releases/a'), { recursive: true });
    mkdirSync(join(d, 'releases/b'), { recursive: true });
    pointCurrent(d, join(d, 'releases/a'));
    pointCurrent(d, join(d, 'releases/b'));
    expect(readlinkSync(join(d, 'current'))).toBe('releases/b');
  });
});

describe('crash backoff', () => {
  it('replaces the first death at once, then doubles up to a cap', () => {
    const backoff = new CrashBackoff();
    expect(backoff.recordDeath(100)).toBe(0);
    expect(backoff.recordDeath(100)).toBe(100);
    expect(backoff.recordDeath(100)).toBe(200);
    for (let i = 0; i < 20; i += 1) backoff.recordDeath(100);
    expect(backoff.delay()).toBe(10_000);
    expect(backoff.recordDeath(60_000)).toBe(0);
  });
});
