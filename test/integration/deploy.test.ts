import { existsSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, listenerRelease, makeAppRoot } from '../helpers/app-root.js';
import { type LoadResult, startTraffic } from '../helpers/load.js';
import { getJson, getJsonUnix, startMaster } from '../helpers/master.js';
import {
  alive,
  cmdline,
  killAll,
  mastersIn,
  PreforkProcess,
  readPid,
  runPrefork,
  startBystander,
  track,
  waitFor,
} from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

async function expectNoFailures(traffic: { stop(): Promise<LoadResult[]> }): Promise<LoadResult[]> {
  const results = await traffic.stop();
  for (const result of results) expect(result.failed, JSON.stringify(result)).toBe(0);
  return results;
}

/** The one master left, its release, and a consistent root. */
async function expectOneMaster(release: string): Promise<number> {
  const pid = readPid(root.path('prefork.pid')) as number;
  expect(existsSync(root.path('prefork.pid.oldbin'))).toBe(false);
  expect(cmdline(pid)).toBe(`prefork: master [${release}]`);
  expect(readlinkSync(root.path('current'))).toBe(`releases/${release}`);
  const status = JSON.parse((await runPrefork(['status', '--json', '--root', root.dir])).stdout);
  expect(status.pidfiles[0].master.release).toBe(release);
  expect(status.pidfiles[0].master.newMasterPid).toBeNull();
  expect(status.pidfiles[1].pid ?? null).toBeNull();
  expect(mastersIn(root.dir)).toEqual([pid]);
  return pid;
}

const fast = ['--verify-window', '1'];

describe('prefork deploy / rollback under load', () => {
  it('deploys v1 → v2 and rolls back from the history, 0 failed requests', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1']);
    const traffic = startTraffic(master.url);
    await waitFor('traffic', () => (traffic.loads[0]?.count() ?? 0) > 200);
    const deployed = await runPrefork([
      'deploy',
      './releases/v2',
      '--root',
      root.dir,
      '--health-path',
      '/health',
    ]);
    expect(deployed.code, deployed.stdout + deployed.stderr).toBe(0);
    // No TTY here: plain timestamped lines, no ANSI codes.
    expect(deployed.stdout).toMatch(
      /^\d{4}-\d\d-\d\dT[\d:.]+Z deploy: preflight: \.\/releases\/v2 \.\.\./m,
    );
    expect(deployed.stdout).toMatch(/deployed v2 \(2\.0\.0\): master \d+ serves/);
    expect(deployed.stdout.includes(String.fromCharCode(27))).toBe(false);
    const newPid = await expectOneMaster('v2');
    track(newPid);
    expect(alive(master.pid)).toBe(false);
    // retire-old: one of the old master's two workers drained by TTOU, the other by WINCH.
    const oldLog = master.proc.logs().filter((l) => l.pid === master.pid);
    const drained = oldLog.filter((l) => /^draining worker \d+ \(/.test(l.msg)).map((l) => l.msg);
    expect(drained.map((m) => /\((\w+)\)$/.exec(m)?.[1])).toEqual(['TTOU', 'WINCH']);
    const answers = await Promise.all([1, 2, 3, 4].map(() => getJson(master.port)));
    expect(new Set(answers.map((a) => a.body.release))).toEqual(new Set(['v2']));

    const rolled = await runPrefork(['rollback', '--root', root.dir, '--json', ...fast]);
    expect(rolled.code, rolled.stdout + rolled.stderr).toBe(0);
    const events = rolled.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(
      events.filter((e) => e.event === 'step' && e.status === 'done').map((e) => e.step),
    ).toEqual([
      'preflight',
      'activate',
      'usr2',
      'wait-ready',
      'verify',
      'retire-old',
      'winch',
      'verify-window',
      'quit-old',
    ]);
    const back = await expectOneMaster('v1');
    track(back);
    const results = await expectNoFailures(traffic);
    expect(results[0]?.byRelease.v1).toBeGreaterThan(0);
    expect(results[0]?.byRelease.v2).toBeGreaterThan(0);
    const history = JSON.parse(readFileSync(root.path('.prefork/history.json'), 'utf8')).deploys;
    expect(history.map((h: { release: string; kind: string }) => `${h.kind}:${h.release}`)).toEqual(
      ['deploy:v2', 'rollback:v1'],
    );
  });

  it.each([
    [
      'throws at load',
      listenerRelease('bad', "throw new Error('no config for production');"),
      [],
      /failed at wait-ready: the new master \d+ exited before it was ready: .*no config for production/,
    ],
    [
      'never becomes ready',
      {
        'package.json': { version: '9.0.0' },
        'index.js': 'module.exports = () => new Promise(() => {});',
      },
      ['--ready-timeout', '3'],
      /failed at wait-ready: the new master \d+ was not ready within --ready-timeout 3 s/,
    ],
    [
      'crash-loops once it serves alone',
      // Crashes, and crashes again on every respawn, once the test drops `crash-now` in it:
      // the test does that when the deploy starts its verify window (after WINCH).
      listenerRelease(
        'bad',
        "setInterval(() => { if (require('node:fs').existsSync(__dirname + '/crash-now')) throw new Error('lost the database'); }, 20);",
      ),
      ['--verify-window', '5', '--json'],
      /failed at verify-window: workers of bad died during verification \(crash loop\?\)/,
    ],
    [
      'fails its health check',
      listenerRelease(
        'bad',
        '',
        "if (req.url === '/health') { res.statusCode = 503; res.end('down'); return; }",
      ),
      ['--health-path', '/health'],
      /failed at verify: health check failed: GET \/health answered 503 \(worker \d+, asked through master \d+\)/,
    ],
    [
      'never answers its health check',
      listenerRelease('bad', '', "if (req.url === '/health') return;"),
      ['--health-path', '/health'],
      /failed at verify: health check failed: no answer to GET \/health \(worker \d+, asked through master \d+\): the app did not answer within 3000 ms/,
    ],
  ])(
    'a release that %s: exit 1, the old release serving, 0 failed requests',
    async (what, files, args, message) => {
      root = makeAppRoot();
      root.addRelease('bad', files as Record<string, string | object>);
      // A Unix socket too: the failed new master must leave its file to the old master.
      const socketPath = root.path('app.sock');
      const master = await startMaster(root.dir, ['--bind', `unix:${socketPath}`, 'releases/v1']);
      const traffic = startTraffic(master.url);
      await waitFor('traffic', () => (traffic.loads[0]?.count() ?? 0) > 100);
      const deploy = new PreforkProcess([
        'deploy',
        'releases/bad',
        '--root',
        root.dir,
        ...fast,
        ...(args as string[]),
      ]);
      if (what === 'crash-loops once it serves alone') {
        await waitFor('the verify window', () =>
          deploy.stdout.includes('"step":"verify-window","status":"start"'),
        );
        writeFileSync(root.path('releases/bad/crash-now'), '');
      }
      const { code } = await deploy.exited;
      const result = { code, stdout: deploy.stdout, stderr: deploy.stderr };
      expect(result.code, result.stdout + result.stderr).toBe(1);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).toMatch(
        new RegExp(`Rolled back: v1 serves again \\(master ${master.pid}\\)`),
      );
      expect(await expectOneMaster('v1')).toBe(master.pid);
      await waitFor('2 workers', () => master.workers().length === 2);
      const seen = traffic.loads[0]?.count() ?? 0;
      await waitFor('traffic after', () => (traffic.loads[0]?.count() ?? 0) > seen + 100);
      const results = await expectNoFailures(traffic);
      expect(results[0]?.byRelease.v1).toBeGreaterThan(0);
      expect((await getJsonUnix(socketPath)).release).toBe('v1');
      const journal = JSON.parse(readFileSync(root.path('.prefork/deploy.json'), 'utf8'));
      expect(journal.outcome).toBe('rolled-back');
    },
  );
});

describe('deploy refuses bad input before anything is signalled (exit 2)', () => {
  it.each([
    ['a missing release', 'releases/nope', /release .*nope does not exist/],
    ['a directory outside releases/', '/tmp', /is not inside .*releases\//],
    ['a release with no entry', 'releases/noentry', /has no entry module/],
    ['a syntax error', 'releases/syntax', /does not parse .*SyntaxError/],
    ['an unsatisfied engines.node', 'releases/future', /needs Node >=99/],
  ])('%s', async (_what, release, message) => {
    root = makeAppRoot();
    root.addRelease('noentry', { 'package.json': { version: '1.0.0', main: 'gone.js' } });
    root.addRelease('syntax', {
      'package.json': { version: '1.0.0' },
      'index.js': 'module.exports = (req, res) => {',
    });
    root.addRelease('future', {
      'package.json': { version: '1.0.0', engines: { node: '>=99' } },
      'index.js': '',
    });
    const master = await startMaster(root.dir, ['releases/v1'], { workers: 1 });
    const result = await runPrefork(['deploy', release, '--root', root.dir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(master.proc.countLogs(/^handling signal/)).toBe(0);
    expect(readlinkSync(root.path('current'))).toBe('releases/v1');
  });

  it('a pidfile naming a live process that is not a prefork master', async () => {
    root = makeAppRoot();
    const bystander = startBystander();
    writeFileSync(root.path('prefork.pid'), `${bystander.pid}\n`);
    symlinkSync('releases/v1', root.path('current'));
    const result = await runPrefork(['deploy', 'releases/v2', '--root', root.dir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/is not a prefork master of .*nothing was signalled/);
    expect(readlinkSync(root.path('current'))).toBe('releases/v1');
    expect(alive(bystander.pid)).toBe(true);
    expect(bystander.signalsSeen()).toBe('');
  });
});

describe('deploy with Unix socket binds only (behind a proxy)', () => {
  it('the verify window asks the new workers themselves: a release that turns sick is rolled back', async () => {
    root = makeAppRoot();
    const socketPath = root.path('app.sock');
    // Healthy for the 3 checks each worker gets in `verify`, sick from the 4th on.
    root.addRelease(
      'sickens',
      listenerRelease(
        'sickens',
        'let checks = 0;',
        "if (req.url === '/health') { checks += 1; res.statusCode = checks > 3 ? 503 : 200; res.end(); return; }",
      ),
    );
    const start = new PreforkProcess(
      ['start', '--root', root.dir, '--bind', `unix:${socketPath}`, '-w', '2', 'releases/v1'],
      { cwd: root.dir },
    );
    await waitFor('the master to be ready', () => readPid(root.path('prefork.pid')) === start.pid);
    const result = await runPrefork([
      'deploy',
      'releases/sickens',
      '--root',
      root.dir,
      '--health-path',
      '/health',
      '--verify-window',
      '2',
    ]);
    expect(result.code, result.stdout + result.stderr).toBe(1);
    expect(result.stderr).toMatch(
      /failed at verify-window: health check failed: GET \/health answered 503 \(worker \d+, asked through master \d+\)/,
    );
    expect(await expectOneMaster('v1')).toBe(start.pid);
    expect((await getJsonUnix(socketPath)).release).toBe('v1');
  });
});
