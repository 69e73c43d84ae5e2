import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot, PREFORK_BIN, REPO } from '../helpers/app-root.js';
import { freePort } from '../helpers/ports.js';
import { killAll, readPid, track } from '../helpers/processes.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

describe("the README's quick start, as typed", () => {
  it('runs every command of it, each exiting 0, and ends with nothing running', async () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Quick start'));
    const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
    const commands = block
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line.startsWith('npx prefork '));
    expect(commands.length).toBeGreaterThanOrEqual(5);
    root = makeAppRoot();
    const port = await freePort();
    for (const command of commands) {
      // The README's /srv/app is this test's app root; its port is a free one.
      const args = command
        .replace(/^npx prefork /, '')
        .replace('127.0.0.1:8000', `127.0.0.1:${port}`)
        .split(/\s+/);
      const { stdout, stderr } = await promisify(execFile)(
        process.execPath,
        [PREFORK_BIN, ...args],
        { cwd: root.dir },
      ).catch((error: { code: number; stdout: string; stderr: string }) => {
        throw new Error(`"${command}" exited ${error.code}: ${error.stderr}${error.stdout}`);
      });
      track(readPid(root.path('prefork.pid')));
      expect(stderr, command).toBe('');
      expect(stdout.length, command).toBeGreaterThan(0);
    }
    expect(readPid(root.path('prefork.pid'))).toBeUndefined();
  });
});
