import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { installExample } from '../helpers/examples.js';
import { startGrpcClients } from '../helpers/grpc-clients.js';
import { startMaster } from '../helpers/master.js';
import { killAll, readPid, runPrefork, track, waitFor } from '../helpers/processes.js';
import { TLS_DIR } from '../helpers/repo.js';

/** gRPC clients, each on its own connection, calling all through every deploy. */
const CLIENTS = 200;
/** Long enough that a deploy which sits it out is told apart from one that does not. */
const GRACEFUL_TIMEOUT_S = 60;

const installed = mkdtempSync(join(tmpdir(), 'prefork-grpc-'));
let root: AppRoot | undefined;

// The example's node_modules (grpc-js, proto-loader, grpc-health-check) are installed here,
// by the test setup, from the npm registry.
beforeAll(async () => {
  await installExample('grpc', installed);
}, 300_000);

afterEach(() => {
  killAll();
  root?.remove();
});

afterAll(() => rmSync(installed, { recursive: true, force: true }));

/**
 * The example served over TLS: an entry of its own that exports the example's server and drain
 * hook with secure credentials (the tests' certificate for 127.0.0.1), as `prefork.app`.
 */
function addTlsRelease(name: string): void {
  const dir = (root as AppRoot).path('releases', name);
  cpSync(installed, dir, { recursive: true });
  const file = (f: string) => JSON.stringify(join(TLS_DIR, f));
  writeFileSync(
    join(dir, 'tls.js'),
    `import { readFileSync } from 'node:fs';
import grpc from '@grpc/grpc-js';
export { default, drain } from './app.js';
export const credentials = grpc.ServerCredentials.createSsl(null, [
  { private_key: readFileSync(${file('key.pem')}), cert_chain: readFileSync(${file('cert.pem')}) },
]);
`,
  );
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ ...manifest, prefork: { app: 'tls.js' } }),
  );
}

/** Deploys (or rolls back to) `release`; resolves with how long the command took. */
async function moveTo(
  command: string[],
  release: string,
  latest: () => Record<string, number>,
  clients = CLIENTS,
): Promise<number> {
  const started = Date.now();
  const result = await runPrefork([
    ...command,
    '--root',
    (root as AppRoot).dir,
    // The health service's answer for the app's own service (docs/examples/grpc/app.js).
    '--health-path',
    '/echo.Echo',
    '--verify-window',
    '1',
  ]);
  const took = Date.now() - started;
  expect(result.code, result.stdout + result.stderr).toBe(0);
  // The old workers stop at once (WINCH), not one at a time: a client one of them told GOAWAY
  // would reconnect to another still accepting, and a call both refuse fails.
  expect(result.stdout).not.toMatch(/retire old master/);
  // The old workers' sessions were closed by GOAWAY as their calls finished: the deploy does
  // not sit out the graceful timeout.
  expect(took, result.stdout).toBeLessThan((GRACEFUL_TIMEOUT_S * 1000) / 2);
  track(readPid((root as AppRoot).path('prefork.pid')));
  // Every client's channel reconnected to the new release.
  await waitFor(`every client on ${release}`, () => latest()[release] === clients, 30_000);
  return took;
}

describe('a grpc-js server as a release (docs/examples/grpc)', () => {
  it(`${CLIENTS} gRPC clients making unary and server-streaming calls through a deploy and a rollback: every call succeeds`, async () => {
    root = makeAppRoot();
    cpSync(installed, root.path('releases', 'grpc-a'), { recursive: true });
    cpSync(installed, root.path('releases', 'grpc-b'), { recursive: true });
    const master = await startMaster(root.dir, [
      'releases/grpc-a',
      '--graceful-timeout',
      String(GRACEFUL_TIMEOUT_S),
    ]);
    const status = await runPrefork(['status', '--root', root.dir]);
    expect(status.stdout).toContain(`listening: 127.0.0.1:${master.port} (gRPC)`);
    const json = JSON.parse((await runPrefork(['status', '--json', '--root', root.dir])).stdout);
    const workers = json.pidfiles[0].master.workers as { http: string }[];
    expect(workers.map((w) => w.http)).toEqual(['grpc', 'grpc']);

    const pool = startGrpcClients(`127.0.0.1:${master.port}`, CLIENTS);
    await waitFor('every client answered', () => pool.latest()['grpc-a'] === CLIENTS, 60_000);
    const deployTook = await moveTo(['deploy', 'releases/grpc-b'], 'grpc-b', pool.latest);
    const rollbackTook = await moveTo(['rollback'], 'grpc-a', pool.latest);
    const result = await pool.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    // Both kinds of call were answered by both releases.
    for (const release of ['grpc-a', 'grpc-b']) {
      expect(result.unary[release] ?? 0).toBeGreaterThan(CLIENTS);
      expect(result.streams[release] ?? 0).toBeGreaterThan(CLIENTS / 2);
    }
    console.log(
      `gRPC: deploy ${deployTook} ms, rollback ${rollbackTook} ms; ${pool.answered()} calls: ${JSON.stringify(result)}`,
    );
  }, 300_000);

  it('over TLS (the release exports secure credentials): 50 clients through a deploy and a rollback, every call succeeds', async () => {
    root = makeAppRoot();
    addTlsRelease('tls-a');
    addTlsRelease('tls-b');
    const master = await startMaster(root.dir, [
      'releases/tls-a',
      '--graceful-timeout',
      String(GRACEFUL_TIMEOUT_S),
    ]);
    const status = await runPrefork(['status', '--root', root.dir]);
    expect(status.stdout).toContain(`listening: 127.0.0.1:${master.port} (gRPC over TLS)`);
    const credentials = grpc.credentials.createSsl(readFileSync(join(TLS_DIR, 'cert.pem')));
    // The certificate's name, not the address: grpc-js 1.14 would send the IP as the TLS
    // server name, which Node 26 refuses (ERR_INVALID_ARG_VALUE, RFC 6066).
    const pool = startGrpcClients(`127.0.0.1:${master.port}`, 50, credentials, {
      'grpc.ssl_target_name_override': 'localhost',
    });
    await waitFor('every client answered', () => pool.latest()['tls-a'] === 50, 60_000);
    await moveTo(['deploy', 'releases/tls-b'], 'tls-b', pool.latest, 50);
    await moveTo(['rollback'], 'tls-a', pool.latest, 50);
    const result = await pool.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);
    expect(result.unary['tls-b'] ?? 0).toBeGreaterThan(50);
    console.log(`gRPC over TLS: ${pool.answered()} calls: ${JSON.stringify(result)}`);
  }, 300_000);
});
