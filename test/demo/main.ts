/**
 * `npm run demo`: the main job on the bundled releases. In a temporary app root it starts a
 * master on releases/v1 (a free loopback port), puts a keep-alive load on it, deploys
 * releases/v2, rolls back, and reports requests per release, failed requests, each step's
 * duration and when traffic switched. Everything it starts is stopped before it exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type autocannonType from 'autocannon';
import { createReporter } from '../../src/report/reporter.js';
import { REPO } from '../helpers/repo.js';

const PREFORK = join(REPO, 'bin/prefork');

/** Result of one prefork command. */
interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function prefork(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child: ChildProcess = spawn(process.execPath, [PREFORK, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c) => {
      stdout += c;
    });
    child.stderr?.on('data', (c) => {
      stderr += c;
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

function must(run: Run, what: string): Run {
  if (run.code !== 0)
    throw new Error(`${what} failed (exit ${run.code}): ${run.stderr || run.stdout}`);
  return run;
}

/** Step timings from a `--json` deploy or rollback. */
function stepTimes(run: Run): { step: string; ms: number }[] {
  return run.stdout
    .trim()
    .split('\n')
    .map(
      (line) => JSON.parse(line) as { event?: string; status?: string; step?: string; ms?: number },
    )
    .filter((e) => e.event === 'step' && e.status === 'done')
    .map((e) => ({ step: String(e.step), ms: Number(e.ms) }));
}

async function main(): Promise<number> {
  const { default: autocannon } = (await import('autocannon')) as {
    default: typeof autocannonType;
  };
  const root = mkdtempSync(join(tmpdir(), 'prefork-demo-'));
  cpSync(join(REPO, 'releases'), join(root, 'releases'), { recursive: true });
  const reporter = await createReporter('demo', false);
  const started = Date.now();
  const perRelease: Record<string, number> = {};
  let firstV2: number | undefined;
  let lastV2: number | undefined;
  let load: autocannonType.Instance | undefined;
  let loadDone: Promise<autocannonType.Result> | undefined;
  try {
    await reporter.step(
      'start',
      'start a master on releases/v1 (2 workers, free loopback port)',
      async () => {
        must(
          await prefork([
            'start',
            'releases/v1',
            '--root',
            root,
            '--bind',
            '127.0.0.1:0',
            '--workers',
            '2',
            '--daemon',
            '--log-file',
            join(root, 'prefork.log'),
          ]),
          'prefork start',
        );
      },
    );
    const status = JSON.parse(
      must(await prefork(['status', '--json', '--root', root]), 'prefork status').stdout,
    );
    const bind = String(status.pidfiles[0].master.binds[0]);
    const url = `http://${bind}`;
    reporter.info(`serving at ${url}; app root ${root}`);

    await reporter.step('load', 'start the load: 16 keep-alive connections', async () => {
      load = autocannon(
        {
          url,
          connections: 16,
          duration: 90,
          requests: [
            {
              method: 'GET',
              path: '/',
              onResponse: (code: number, body: string) => {
                if (code !== 200) return;
                const release = (JSON.parse(body) as { release: string }).release;
                perRelease[release] = (perRelease[release] ?? 0) + 1;
                if (release === 'v2') {
                  firstV2 ??= Date.now();
                  lastV2 = Date.now();
                }
              },
            },
          ],
        },
        () => {},
      );
      const instance: autocannonType.Instance = load;
      loadDone = new Promise((resolve) => instance.on('done', resolve));
      while ((perRelease.v1 ?? 0) < 500) await new Promise((r) => setTimeout(r, 20));
    });

    const deployStart = Date.now();
    const deployed = await reporter.step('deploy', 'prefork deploy releases/v2', async () =>
      must(
        await prefork([
          'deploy',
          'releases/v2',
          '--root',
          root,
          '--health-path',
          '/health',
          '--json',
        ]),
        'prefork deploy',
      ),
    );
    const rollbackStart = Date.now();
    const rolled = await reporter.step('rollback', 'prefork rollback (back to v1)', async () =>
      must(
        await prefork(['rollback', '--root', root, '--health-path', '/health', '--json']),
        'prefork rollback',
      ),
    );
    const afterRollback = perRelease.v1 ?? 0;
    await reporter.step('settle', 'keep the load on v1 for a moment', async () => {
      while ((perRelease.v1 ?? 0) < afterRollback + 500)
        await new Promise((r) => setTimeout(r, 20));
    });
    load?.stop();
    const result = await (loadDone as Promise<autocannonType.Result>);
    await reporter.step('stop', 'prefork stop', async () => {
      must(await prefork(['stop', '--root', root]), 'prefork stop');
    });

    const failed = result.errors + result.timeouts + result.non2xx;
    const lines = [
      '',
      'prefork demo report',
      '-------------------',
      `requests answered: ${result.requests.total} (v1: ${perRelease.v1 ?? 0}, v2: ${perRelease.v2 ?? 0})`,
      `failed requests:   ${failed} (errors ${result.errors}, timeouts ${result.timeouts}, non-2xx ${result.non2xx})`,
      `throughput:        ${Math.round(result.requests.average)} req/s average, latency p99 ${result.latency.p99} ms`,
      `traffic on v2:     from +${(((firstV2 ?? deployStart) - deployStart) / 1000).toFixed(2)} s into the deploy to +${(((lastV2 ?? rollbackStart) - rollbackStart) / 1000).toFixed(2)} s into the rollback`,
      '',
      'deploy steps (ms):   ' +
        stepTimes(deployed)
          .map((s) => `${s.step} ${s.ms}`)
          .join(', '),
      'rollback steps (ms): ' +
        stepTimes(rolled)
          .map((s) => `${s.step} ${s.ms}`)
          .join(', '),
      `total: ${((Date.now() - started) / 1000).toFixed(1)} s`,
      '',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return failed === 0 ? 0 : 1;
  } finally {
    load?.stop();
    // Whatever happened, leave nothing running: a quick stop of any master still up.
    await prefork(['stop', '--quick', '--root', root]).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`prefork demo: ${(error as Error).message}\n`);
    process.exit(1);
  },
);
