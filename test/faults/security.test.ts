import { chownSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { getJson, startMaster } from '../helpers/master.js';
import { killAll, readPid, runPrefork, startBystander, track } from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

/** Every file under `dir`, recursively, with its text (small files only). */
function allText(dir: string): string {
  let text = '';
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || entry.name.endsWith('.sock')) continue;
    const path = `${entry.parentPath}/${entry.name}`;
    text += readFileSync(path, 'utf8');
  }
  return text;
}

describe('security', () => {
  it('release paths with spaces, quotes, $() and newlines are inert: nothing runs through a shell', async () => {
    root = makeAppRoot();
    const name = `we ird'"$(touch PWNED)\`touch PWNED2\`;touch PWNED3\nsecond line`;
    root.addRelease(name, {
      'package.json': { version: '3.0.0' },
      'index.js':
        "module.exports = (req, res) => res.end(JSON.stringify({ release: 'odd', pid: process.pid }));",
    });
    const master = await startMaster(root.dir, ['releases/v1']);
    const deployed = await runPrefork([
      'deploy',
      `releases/${name}`,
      '--root',
      root.dir,
      '--verify-window',
      '0.5',
    ]);
    expect(deployed.code, deployed.stderr).toBe(0);
    track(readPid(root.path('prefork.pid')));
    expect((await getJson(master.port)).body.release).toBe('odd');
    const rolled = await runPrefork(['rollback', '--root', root.dir, '--verify-window', '0.5']);
    expect(rolled.code, rolled.stderr).toBe(0);
    track(readPid(root.path('prefork.pid')));
    for (const file of ['PWNED', 'PWNED2', 'PWNED3']) {
      expect(existsSync(root.path(file))).toBe(false);
      expect(existsSync(root.path('releases', file))).toBe(false);
      expect(existsSync(file)).toBe(false);
    }
  });

  it('secrets in the environment are not written to logs, the journal, the history or status', async () => {
    root = makeAppRoot();
    const secret = 's3cr3t-9f2a71c4';
    const master = await startMaster(
      root.dir,
      ['--log-file', root.path('logs/app.log'), 'releases/v1'],
      {
        env: { DATABASE_PASSWORD: secret, API_TOKEN: secret },
      },
    );
    const env = { ...process.env, DATABASE_PASSWORD: secret };
    expect(
      (
        await runPrefork(
          ['deploy', 'releases/v2', '--root', root.dir, '--verify-window', '0.5', '--json'],
          { env },
        )
      ).code,
    ).toBe(0);
    track(readPid(root.path('prefork.pid')));
    const status = await runPrefork(['status', '--json', '--root', root.dir], { env });
    expect(status.stdout).not.toContain(secret);
    expect(master.proc.stdout + master.proc.stderr).not.toContain(secret);
    expect(allText(root.path('.prefork'))).not.toContain(secret);
    expect(allText(root.path('logs'))).not.toContain(secret);
  });

  it('a pidfile owned by another user is not acted on', async () => {
    root = makeAppRoot();
    const bystander = startBystander();
    writeFileSync(root.path('prefork.pid'), `${bystander.pid}\n`);
    chownSync(root.path('prefork.pid'), 65534, 65534);
    const result = await runPrefork(['reload', '--root', root.dir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /prefork\.pid belongs to uid 65534, not to you: nothing was signalled/,
    );
    expect(bystander.signalsSeen()).toBe('');
  });
});
