import {
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, listenerRelease, makeAppRoot } from '../helpers/app-root.js';
import { startMaster } from '../helpers/master.js';
import {
  alive,
  childrenOf,
  killAll,
  runPrefork,
  runStart,
  startBystander,
} from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

/** Runs `prefork start` expected to fail; checks the one-line error and that nothing was left. */
async function startFails(args: string[], code: number, message: RegExp): Promise<void> {
  const result = await runStart(root.dir, ['-w', '1', ...args]);
  expect(result.code, result.stderr).toBe(code);
  const lines = result.stderr.trim().split('\n');
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^prefork: /);
  expect(lines[0]).toMatch(message);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  expect(existsSync(root.path('prefork.pid'))).toBe(false);
  expect(existsSync(root.path('current'))).toBe(false);
  const leftovers = existsSync(root.path('.prefork')) ? readdirSync(root.path('.prefork')) : [];
  expect(leftovers.filter((f) => f.endsWith('.sock'))).toEqual([]);
  expect(childrenOf(process.pid).filter((pid) => alive(pid))).toEqual([]);
}

describe('bad input: a clear one-line error, a non-zero exit, nothing left behind', () => {
  it('an unknown option', async () => {
    root = makeAppRoot();
    await startFails(['--bogus', 'releases/v1'], 2, /unknown option '--bogus'/);
  });

  it('a bad --bind', async () => {
    root = makeAppRoot();
    await startFails(['--bind', 'nonsense', 'releases/v1'], 2, /bad bind "nonsense": no port/);
    await startFails(['--bind', '127.0.0.1:99999', 'releases/v1'], 2, /"99999" is not a port/);
  });

  it('a port in use', async () => {
    root = makeAppRoot();
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      await startFails(
        ['--bind', `127.0.0.1:${port}`, 'releases/v1'],
        2,
        /cannot bind 127\.0\.0\.1:\d+: the address is already in use/,
      );
    } finally {
      blocker.close();
    }
  });

  it('a release without package.json, without an entry, outside releases/, or needing another Node', async () => {
    root = makeAppRoot();
    root.addRelease('nopkg', { 'index.js': 'module.exports = (q, s) => s.end()' });
    root.addRelease('noentry', { 'package.json': { version: '1.0.0', main: 'missing.js' } });
    root.addRelease('future', {
      'package.json': { version: '1.0.0', engines: { node: '>=99' } },
      'index.js': '',
    });
    await startFails(['releases/nopkg'], 2, /releases\/nopkg has no package\.json/);
    await startFails(['releases/noentry'], 2, /has no entry module missing\.js: set "main"/);
    await startFails(['/tmp'], 2, /is not inside .*releases\/: put each release/);
    await startFails(
      ['releases/future'],
      2,
      /needs Node >=99 \(engines\.node\) but this Node is v/,
    );
    await startFails(['releases/absent'], 2, /release .*absent does not exist/);
    expect(existsSync(root.path('current'))).toBe(false);
  });

  it('an entry that throws, or has a syntax error, or exports nothing servable', async () => {
    root = makeAppRoot();
    root.addRelease(
      'throws',
      listenerRelease('throws', "throw new Error('no database at db:5432');"),
    );
    root.addRelease('syntax', {
      'package.json': { version: '1.0.0' },
      'index.js': 'module.exports = (req, res) => {',
    });
    root.addRelease('nothing', {
      'package.json': { version: '1.0.0' },
      'index.js': 'module.exports = 42;',
    });
    await startFails(
      ['releases/throws'],
      1,
      /release throws failed to start .*no database at db:5432/,
    );
    await startFails(['releases/syntax'], 1, /release syntax failed to start .*SyntaxError/);
    await startFails(
      ['releases/nothing'],
      1,
      /must export .* a request listener .*it exports number/,
    );
  });

  it('an invalid config key or value', async () => {
    root = makeAppRoot();
    writeFileSync(root.path('prefork.config.json'), JSON.stringify({ workerz: 2 }));
    await startFails(
      ['releases/v1'],
      2,
      /prefork\.config\.json: unknown key "workerz" \(allowed keys: bind, workers/,
    );
    writeFileSync(root.path('prefork.config.json'), JSON.stringify({ workers: 'many' }));
    await startFails(
      ['releases/v1'],
      2,
      /"workers": Invalid type: Expected number but received "many"/,
    );
    writeFileSync(root.path('prefork.config.json'), '{ not json');
    await startFails(['releases/v1'], 2, /is not valid JSON/);
    writeFileSync(root.path('prefork.config.json'), '{}');
    await startFails(
      ['--workers', '0', 'releases/v1'],
      2,
      /--workers: Invalid value: Expected >=1 but received 0/,
    );
    await startFails(
      ['--log-level', 'loud', 'releases/v1'],
      2,
      /option '--log-level <level>' argument 'loud' is invalid/,
    );
  });

  it('a pidfile that is a symlink is never written through', async () => {
    root = makeAppRoot();
    const target = root.path('precious.txt');
    writeFileSync(target, 'keep me');
    symlinkSync(target, root.path('prefork.pid'));
    const result = await runStart(root.dir, ['-w', '1', 'releases/v1']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/prefork\.pid is a symlink: prefork does not follow it/);
    expect(readFileSync(target, 'utf8')).toBe('keep me');
    expect(lstatSync(root.path('prefork.pid')).isSymbolicLink()).toBe(true);
  });

  it('a second start while a master runs is refused', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1'], { workers: 1 });
    const result = await runStart(root.dir, ['releases/v2']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      new RegExp(`a master is already running \\(pid ${master.pid}\\)`),
    );
    expect(readFileSync(root.path('prefork.pid'), 'utf8').trim()).toBe(String(master.pid));
    expect(lstatSync(root.path('current')).isSymbolicLink()).toBe(true);
  });

  it('a pidfile naming a live process that is not a prefork master: never signalled', async () => {
    root = makeAppRoot();
    const bystander = startBystander();
    writeFileSync(root.path('prefork.pid'), `${bystander.pid}\n`);
    for (const command of [['reload'], ['stop'], ['scale', '3'], ['reopen-logs']]) {
      const result = await runPrefork([...command, '--root', root.dir]);
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(
        new RegExp(
          `pid ${bystander.pid} in .*prefork\\.pid is not a prefork master of .*nothing was signalled`,
        ),
      );
    }
    const status = await runPrefork(['status', '--root', root.dir]);
    expect(status.stdout).toMatch(/is not a prefork master of .* \(stale pidfile\?\)/);
    expect(alive(bystander.pid)).toBe(true);
    expect(bystander.signalsSeen()).toBe('');
  });

  it('a live prefork master that does not answer (stopped) is told from a stale pidfile: exit 2, nothing signalled, the fix named', async () => {
    root = makeAppRoot();
    const master = await startMaster(root.dir, ['releases/v1'], { workers: 1 });
    process.kill(master.pid, 'SIGSTOP');
    try {
      for (const command of [['deploy', 'releases/v2'], ['stop'], ['reload']]) {
        const asked = Date.now();
        const result = await runPrefork([...command, '--root', root.dir]);
        expect(result.code, result.stderr).toBe(2);
        // Told at once: a stopped master cannot answer, so no control timeout (5 s) is sat out.
        expect(Date.now() - asked).toBeLessThan(4000);
        expect(result.stderr).toContain(
          `pid ${master.pid} in ${root.path('prefork.pid')} is a prefork master of ${root.dir} ("prefork: master [v1]") that is stopped (state T: SIGSTOP or a debugger): nothing was signalled; do not remove the pidfile: that master still owns the listen sockets. Check it with "ps -o pid,stat,cmd -p ${master.pid}": state T means stopped, resume it with "kill -CONT ${master.pid}"`,
        );
        expect(result.stderr).not.toMatch(/remove the pidfile or start a master/);
      }
      const status = await runPrefork(['status', '--root', root.dir]);
      expect(status.stdout).toMatch(/is a prefork master of .* that is stopped \(state T/);
      expect(readFileSync(root.path('prefork.pid'), 'utf8').trim()).toBe(String(master.pid));
      expect(lstatSync(root.path('current')).isSymbolicLink()).toBe(true);
    } finally {
      process.kill(master.pid, 'SIGCONT');
    }
    // Resumed, it answers again and had been sent nothing to handle.
    const status = await runPrefork(['status', '--root', root.dir]);
    expect(status.code, status.stdout).toBe(0);
    expect(master.proc.countLogs(/^handling signal/)).toBe(0);
  });
});
