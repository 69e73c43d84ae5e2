import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EXIT, PreforkError } from '../../src/errors/index.js';
import { type Journal, writeJournal } from '../../src/journal/journal.js';
import { takeDeployLock } from '../../src/journal/lock.js';
import { waitFor } from '../helpers/processes.js';
import { REPO } from '../helpers/repo.js';

const dirs: string[] = [];
const pids: number[] = [];

afterEach(() => {
  for (const pid of pids.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function makeRoot(): string {
  const dir = mkdtempSync(join(tmpdir(), 'prefork-lock-'));
  dirs.push(dir);
  return dir;
}

/** Another process (a deploy, as far as the lock knows) that takes the lock of `root` and holds it. */
async function holder(root: string): Promise<{ pid: number; exited: Promise<void> }> {
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { takeDeployLock } = await import(${JSON.stringify(join(REPO, 'dist/journal/lock.js'))});
await takeDeployLock(${JSON.stringify(root)});
console.log('locked');
setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  pids.push(child.pid as number);
  let out = '';
  child.stdout.on('data', (chunk) => {
    out += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitFor('the other process to take the lock', () => out.includes('locked'), 10_000);
  return { pid: child.pid as number, exited };
}

async function lockedOut(root: string): Promise<unknown> {
  try {
    const lock = await takeDeployLock(root);
    await lock.release();
    return 'took the lock';
  } catch (error) {
    return error instanceof PreforkError ? `exit ${error.exitCode}` : error;
  }
}

describe('the deploy lock', () => {
  it('is refused (exit 4) while its holder runs, and taken at once, not after it goes stale, once the holder is killed', async () => {
    const root = makeRoot();
    const other = await holder(root);
    expect(readFileSync(join(root, '.prefork/deploy.lock.pid'), 'utf8').trim()).toBe(
      String(other.pid),
    );
    expect(await lockedOut(root)).toBe(`exit ${EXIT.locked}`);
    process.kill(other.pid, 'SIGKILL');
    await other.exited;
    // proper-lockfile calls the lock stale 5 s after its holder last refreshed it; a wait of 0
    // fails with exit 4 unless the dead holder's lock is broken.
    const started = Date.now();
    const lock = await takeDeployLock(root);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(readFileSync(join(root, '.prefork/deploy.lock.pid'), 'utf8').trim()).toBe(
      String(process.pid),
    );
    await lock.release();
    expect(existsSync(join(root, '.prefork/deploy.lock'))).toBe(false);
    expect(existsSync(join(root, '.prefork/deploy.lock.pid'))).toBe(false);
  });

  it('a lock with no holder pid beside it (an earlier prefork) is broken when the journal names a deploy that is gone, kept when it names one that runs', async () => {
    const root = makeRoot();
    const other = await holder(root);
    rmSync(join(root, '.prefork/deploy.lock.pid'), { force: true });
    const journal: Journal = {
      kind: 'deploy',
      release: 'v2',
      releaseDir: join(root, 'releases/v2'),
      version: '2.0.0',
      previous: 'v1',
      oldPid: other.pid,
      newPid: undefined,
      step: 'usr2',
      outcome: 'running',
      error: undefined,
      pid: other.pid,
      startedAt: new Date().toISOString(),
      steps: [],
    };
    writeJournal(root, journal);
    expect(await lockedOut(root)).toBe(`exit ${EXIT.locked}`);
    process.kill(other.pid, 'SIGKILL');
    await other.exited;
    expect(await lockedOut(root)).toBe('took the lock');
  });
});
