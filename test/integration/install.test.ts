import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { startMaster, upgrade } from '../helpers/master.js';
import { killAll, mastersIn, readPid, runPrefork, track } from '../helpers/processes.js';

let root: AppRoot;
let work: string;

beforeEach(() => {
  root = makeAppRoot();
  work = root.path('work');
  mkdirSync(work);
});

afterEach(() => {
  for (const pid of mastersIn(root.dir)) track(pid);
  killAll();
  root?.remove();
});

const APP = {
  'package.json': JSON.stringify({ name: 'app', version: '3.1.0', main: 'index.js' }),
  'index.js': "module.exports = (req, res) => res.end('v3');\n",
};

/** A release directory in the work area, with these files. */
function releaseDir(name: string, files: Record<string, string> = APP): string {
  const dir = join(work, name);
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(join(dir, file, '..'), { recursive: true });
    writeFileSync(join(dir, file), content);
  }
  return dir;
}

/** `tar czf <file> -C <dir> .`, as a CI job builds an artifact. */
async function archiveOf(dir: string, file: string, entries = ['.']): Promise<string> {
  await tar.c({ gzip: true, file, cwd: dir, portable: true }, entries);
  return file;
}

interface RawEntry {
  path: string;
  type: string;
  linkpath?: string;
  body?: string;
}

/**
 * A .tar.gz written block by block, holding entries no well-behaved tar would write from a
 * directory (`..`, absolute paths, links out, devices): what an attacker's artifact holds.
 */
function rawArchive(file: string, entries: RawEntry[]): string {
  const blocks: Buffer[] = [];
  for (const entry of [
    { path: 'package.json', type: 'File', body: APP['package.json'] },
    { path: 'index.js', type: 'File', body: APP['index.js'] },
    ...entries,
  ]) {
    const body = Buffer.from(entry.body ?? '');
    const header = new tar.Header({
      path: entry.path,
      type: entry.type as tar.Header['type'],
      linkpath: entry.linkpath ?? '',
      size: body.length,
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtime: new Date(),
      devmaj: 1,
      devmin: 3,
    });
    header.encode();
    blocks.push(header.block as Buffer);
    if (body.length > 0) {
      blocks.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  writeFileSync(file, gzipSync(Buffer.concat(blocks)));
  return file;
}

function install(args: string[]) {
  return runPrefork(['install', '--root', root.dir, ...args], { cwd: work });
}

/** What releases/ holds, hidden entries (an install's staging) included. */
function releasesListing(): string[] {
  return readdirSync(root.path('releases')).sort();
}

describe('prefork install', () => {
  it('installs an archive whose files sit at its root, named after it', async () => {
    const file = await archiveOf(releaseDir('build'), join(work, 'app-3.1.0.tar.gz'));
    const run = await install([file, '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(readFileSync(root.path('releases', 'app-3.1.0', 'index.js'), 'utf8')).toContain('v3');
    const installed = run.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l))
      .find((e) => e.event === 'installed');
    expect(installed).toMatchObject({ name: 'app-3.1.0', version: '3.1.0', kind: 'node' });
    expect(releasesListing()).toEqual(['app-3.1.0', 'v1', 'v2']);
    const listed = JSON.parse(
      (await runPrefork(['releases', '--json', '--root', root.dir])).stdout,
    );
    expect(listed.releases.map((r: { name: string }) => r.name)).toContain('app-3.1.0');
  });

  it("installs an archive of one directory (tar czf v3.tar.gz v3/) as that directory's contents", async () => {
    releaseDir('v3');
    const file = await archiveOf(work, join(work, 'build.tar.gz'), ['v3']);
    const run = await install([file, '--name', 'v3']);
    expect(run.code, run.stderr).toBe(0);
    expect(existsSync(root.path('releases', 'v3', 'package.json'))).toBe(true);
    expect(run.stdout).toMatch(/installed v3 \(3\.1\.0\)/);
  });

  it('installs a directory, keeping the symlinks that stay inside it', async () => {
    const dir = releaseDir('build', { ...APP, 'lib/a.js': 'exports.a = 1;\n' });
    symlinkSync('lib/a.js', join(dir, 'a.js'));
    const run = await install([dir, '--name', 'v3']);
    expect(run.code, run.stderr).toBe(0);
    expect(readFileSync(root.path('releases', 'v3', 'a.js'), 'utf8')).toContain('exports.a');
  });

  it('a release that is refused for an entry leading outside leaves releases/ as it was', async () => {
    const cases: [string, RawEntry, RegExp][] = [
      ['dotdot', { path: '../escaped.js', type: 'File', body: 'x' }, /holds "\.\."/],
      ['absolute', { path: '/tmp/escaped.js', type: 'File', body: 'x' }, /absolute path/],
      [
        'symlink-abs',
        { path: 'etc', type: 'SymbolicLink', linkpath: '/etc' },
        /symlink to the absolute path/,
      ],
      [
        'symlink-up',
        { path: 'lib/up', type: 'SymbolicLink', linkpath: '../../..' },
        /symlink leading outside/,
      ],
      [
        'hardlink',
        { path: 'passwd', type: 'Link', linkpath: '/etc/passwd' },
        /hard link to the absolute path/,
      ],
      ['hardlink-up', { path: 'x', type: 'Link', linkpath: '../x' }, /hard link leading outside/],
      ['device', { path: 'null', type: 'CharacterDevice' }, /character device/],
      ['fifo', { path: 'pipe', type: 'FIFO' }, /fifo/i],
    ];
    const before = releasesListing();
    for (const [name, entry, said] of cases) {
      const run = await install([
        rawArchive(join(work, `${name}.tar.gz`), [entry]),
        '--name',
        name,
      ]);
      expect(run.code, `${name}: ${run.stderr}`).toBe(2);
      expect(run.stderr, name).toMatch(said);
      expect(run.stderr, name).toMatch(/Nothing was written/);
      // Refused before anything was written: not even a staging directory was made.
      expect(run.stdout, name).not.toMatch(/unpack/);
      expect(releasesListing(), name).toEqual(before);
    }
    expect(existsSync(join(root.dir, 'escaped.js'))).toBe(false);
    expect(existsSync('/tmp/escaped.js')).toBe(false);
  });

  it('refuses a chain of links that climbs out though each link alone stays inside', async () => {
    const file = rawArchive(join(work, 'chain.tar.gz'), [
      { path: 'self', type: 'SymbolicLink', linkpath: '.' },
      { path: 'out', type: 'SymbolicLink', linkpath: 'self/..' },
    ]);
    const before = releasesListing();
    const run = await install([file, '--name', 'chain']);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/"out" is a symlink that resolves outside the release/);
    expect(releasesListing()).toEqual(before);
  });

  it('refuses an existing name, leaving that release untouched', async () => {
    const file = await archiveOf(releaseDir('build'), join(work, 'v2.tar.gz'));
    const v2 = readFileSync(root.path('releases', 'v2', 'package.json'), 'utf8');
    const run = await install([file]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/releases\/v2 already exists: a release name is never reused/);
    expect(readFileSync(root.path('releases', 'v2', 'package.json'), 'utf8')).toBe(v2);
    expect(releasesListing()).toEqual(['v1', 'v2']);
  });

  it('refuses a corrupt archive and a truncated one', async () => {
    writeFileSync(join(work, 'garbage.tar.gz'), 'this is not an archive\n'.repeat(40));
    const good = readFileSync(await archiveOf(releaseDir('build'), join(work, 'good.tar.gz')));
    writeFileSync(join(work, 'truncated.tar.gz'), good.subarray(0, Math.floor(good.length / 2)));
    for (const name of ['garbage', 'truncated']) {
      const run = await install([join(work, `${name}.tar.gz`)]);
      expect(run.code, `${name}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toMatch(/is not a readable tar archive .*build it with "tar czf/);
      expect(releasesListing()).toEqual(['v1', 'v2']);
    }
  });

  it("refuses a release deploy's preflight would refuse, naming the cause", async () => {
    const noPackage = await archiveOf(
      releaseDir('nopkg', { 'index.js': 'module.exports = () => {};\n' }),
      join(work, 'nopkg.tar.gz'),
    );
    const broken = await archiveOf(
      releaseDir('broken', { ...APP, 'index.js': 'module.exports = (req, res) => {\n' }),
      join(work, 'broken.tar.gz'),
    );
    let run = await install([noPackage]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      /cannot install .*nopkg\.tar\.gz: release releases\/nopkg has no package\.json/,
    );
    run = await install([broken]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/releases\/broken\/index\.js does not parse/);
    expect(releasesListing()).toEqual(['v1', 'v2']);
    run = await install([join(work, 'missing.tar.gz')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/missing\.tar\.gz does not exist/);
    run = await install([noPackage, '--name', '../x']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/release name "\.\.\/x" is not usable/);
  });
});

describe('prefork releases prune', () => {
  /** Installs releases r1..rN from directories, oldest first. */
  async function installAll(names: string[]): Promise<void> {
    for (const name of names) {
      const run = await install([releaseDir(`src-${name}`), '--name', name]);
      expect(run.code, run.stderr).toBe(0);
    }
  }

  function prune(args: string[]) {
    return runPrefork(['releases', 'prune', '--root', root.dir, '--json', ...args]);
  }

  function decisions(stdout: string): Record<string, string> {
    return Object.fromEntries(
      stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l))
        .filter((e) => e.event === 'prune')
        .map((e) => [e.release, e.why ? `${e.action}: ${e.why}` : e.action]),
    );
  }

  it('keeps the newest, current, the rollback target and every release a live master runs (.oldbin too)', async () => {
    await installAll(['r1', 'r2', 'r3', 'r4', 'r5']);
    const master = await startMaster(root.dir, ['r1']);
    const deploy = await runPrefork(['deploy', 'r2', '--root', root.dir, '--verify-window', '0']);
    expect(deploy.code, deploy.stderr).toBe(0);
    const serving = readPid(root.path('prefork.pid')) as number;
    track(serving);
    // An upgrade in flight, by hand: current -> r3 and USR2; the r2 master waits in .oldbin.
    const tmp = root.path('current.tmp');
    symlinkSync('releases/r3', tmp);
    renameSync(tmp, root.path('current'));
    const newMaster = await upgrade({ ...master, pid: serving });
    expect(readPid(root.path('prefork.pid.oldbin'))).toBe(serving);
    await installAll(['r6']);
    // releases/ also holds v1 and v2 (copied in before r1): the oldest of all.
    const dry = await prune(['--keep', '1', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(decisions(dry.stdout)).toEqual({
      r6: 'keep',
      r3: `protect: current`,
      r2: `protect: run by master ${serving}`,
      r1: 'protect: the rollback target',
      r5: 'remove',
      r4: 'remove',
      v2: 'remove',
      v1: 'remove',
    });
    expect(releasesListing()).toEqual(['r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'v1', 'v2']);
    const run = await prune(['--keep', '1']);
    expect(run.code, run.stderr).toBe(0);
    expect(releasesListing()).toEqual(['r1', 'r2', 'r3', 'r6']);
    // Both masters still run their releases.
    expect(mastersIn(root.dir).sort()).toEqual([serving, newMaster.pid].sort());
    expect(statSync(root.path('releases', 'r2', 'index.js')).isFile()).toBe(true);
  }, 120_000);

  it('refuses --keep 0 and a missing --keep, changing nothing', async () => {
    let run = await prune(['--keep', '0']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--keep 0: keep at least 1 release/);
    run = await prune([]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/required option '--keep <n>'/);
    expect(releasesListing()).toEqual(['v1', 'v2']);
  });
});
