import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from '../helpers/app-root.js';
import { track } from '../helpers/processes.js';

describe('npm run demo', () => {
  it('deploys v2 and rolls back under load, reports 0 failed requests, leaves nothing running', async () => {
    const child = spawn(process.execPath, [join(REPO, 'test/.build/test/demo/main.js')], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CI: 'true' },
    });
    track(child.pid);
    let out = '';
    child.stdout.on('data', (c) => {
      out += c;
    });
    child.stderr.on('data', (c) => {
      out += c;
    });
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code, out).toBe(0);
    expect(out).toMatch(/^failed requests: +0 \(errors 0, timeouts 0, non-2xx 0\)$/m);
    expect(out).toMatch(/^requests answered: \d+ \(v1: [1-9]\d*, v2: [1-9]\d*\)$/m);
    expect(out).toMatch(
      /^deploy steps \(ms\): +preflight \d+, activate \d+, usr2 \d+, wait-ready \d+, verify \d+, retire-old \d+, winch \d+, verify-window \d+, quit-old \d+$/m,
    );
    const root = /app root (\S+)/.exec(out)?.[1] as string;
    const { existsSync } = await import('node:fs');
    expect(existsSync(root)).toBe(false);
  }, 120_000);
});
