import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fdName } from '../../src/exec/exec-worker.js';
import { notifyMessages } from '../../src/exec/notify-message.js';
import { readRelease } from '../../src/release/read-release.js';

/** Every directory a test made (some make two), removed after it. */
const dirs: string[] = [];
afterEach(() => {
  for (const made of dirs.splice(0)) rmSync(made, { recursive: true, force: true });
});

/** A release directory `r1` with this prefork.json and an executable `bin/server`. */
function release(json: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'prefork-exec-'));
  dirs.push(dir);
  const releaseDir = join(dir, 'r1');
  mkdirSync(join(releaseDir, 'bin'), { recursive: true });
  writeFileSync(join(releaseDir, 'bin/server'), '#!/bin/sh\n');
  chmodSync(join(releaseDir, 'bin/server'), 0o755);
  writeFileSync(
    join(releaseDir, 'prefork.json'),
    typeof json === 'string' ? json : JSON.stringify(json),
  );
  return releaseDir;
}

describe('prefork.json', () => {
  it('reads an exec release: the program from the release directory, defaults for the rest', () => {
    const r = readRelease(
      release({ command: ['./bin/server', '--port-from-fd'], version: '1.4.2' }),
    );
    expect(r).toMatchObject({ kind: 'exec', name: 'r1', version: '1.4.2' });
    if (r.kind !== 'exec') throw new Error('not exec');
    expect(r.exec).toEqual({
      command: [join(r.dir, 'bin/server'), '--port-from-fd'],
      ready: { kind: 'notify' },
      stopSignal: 'SIGTERM',
      watchdogSec: 0,
      env: {},
    });
  });

  it('looks a bare name up on PATH (the release env’s PATH first); no semver version: the directory name', () => {
    const r = readRelease(release({ command: ['sh', '-c', 'exit 0'], version: 'latest' }));
    expect(r.version).toBe('r1');
    expect(r.kind === 'exec' && r.exec.command[0]).toMatch(/\/sh$/);
    const own = readRelease(release({ command: ['server'], env: { PATH: 'bin' } }));
    expect(own.kind === 'exec' && own.exec.command[0]).toBe(join(own.dir, 'bin/server'));
  });

  it.each([
    ['{ "command": ', /prefork\.json is not valid JSON/],
    [{}, /"command": Invalid key: Expected "command" but received undefined/],
    [{ command: [] }, /"command": Invalid length/],
    [
      { command: ['./bin/server'], ready: { afterMs: -1 } },
      /"ready\.afterMs": Invalid value: Expected >=0/,
    ],
    [{ command: ['./bin/server'], stopSignal: 'SIGNOPE' }, /"stopSignal": expected a signal name/],
    [{ command: ['./bin/server'], stopSignal: 'SIGKILL' }, /"stopSignal": expected a signal name/],
    [{ command: ['./bin/server'], watchdogSec: -1 }, /"watchdogSec": Invalid value/],
    [
      { command: ['./bin/server'], env: { NOTIFY_SOCKET: '/x' } },
      /"env" sets NOTIFY_SOCKET, which prefork sets/,
    ],
    [{ command: ['./bin/server'], env: { 'A-B': '1' } }, /"env\.A-B"/],
    [{ command: ['./bin/server'], cmd: 'x' }, /unknown key "cmd" \(allowed keys: command, version/],
    [{ command: ['./bin/nope'] }, /"command" program "\.\/bin\/nope" does not exist/],
    [{ command: ['./bin'] }, /"command" program "\.\/bin" is not a file/],
    [{ command: ['prefork-no-such-program'] }, /is not on PATH: install it, or give its path/],
  ])('refuses %j naming the key', (json, message) => {
    expect(() => readRelease(release(json))).toThrow(message);
  });

  it('a program that is not executable: says so and how to fix it', () => {
    const r = release({ command: ['./bin/server'] });
    chmodSync(join(r, 'bin/server'), 0o644);
    expect(() => readRelease(r)).toThrow(/is not executable \(.*bin\/server\): chmod \+x/);
  });
});

describe('sd_notify messages and fd names', () => {
  it('READY=1, WATCHDOG=1 and STATUS= mean something; the rest of systemd’s vocabulary is ignored', () => {
    expect(notifyMessages('READY=1\nSTATUS=listening on 2 sockets\nMAINPID=7\nWATCHDOG=1')).toEqual(
      [
        { type: 'ready', tls: false, http: 'http/1.1', moves: false },
        { type: 'status', text: 'listening on 2 sockets' },
        { type: 'watchdog' },
      ],
    );
    expect(notifyMessages('READY=0\nSTOPPING=1\n\ngarbage')).toEqual([]);
  });

  it('LISTEN_FDNAMES: the bind, with the ":" systemd forbids as "_"', () => {
    expect(['127.0.0.1:8000', '[::1]:80', 'unix:/run/app.sock'].map(fdName)).toEqual([
      '127.0.0.1_8000',
      '[__1]_80',
      'unix_/run/app.sock',
    ]);
  });
});
