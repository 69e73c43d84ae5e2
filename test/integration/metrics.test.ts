import { existsSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, listenerRelease, makeAppRoot, switchCurrent } from '../helpers/app-root.js';
import { startClientLoad } from '../helpers/load.js';
import { type RunningMaster, startMaster, upgrade } from '../helpers/master.js';
import { freePort } from '../helpers/ports.js';
import { alive, killAll, mastersIn, runPrefork, track, waitFor } from '../helpers/processes.js';
import {
  type Prometheus,
  promtoolCheck,
  type RangeSeries,
  type Sample,
  startPrometheus,
} from '../helpers/prometheus.js';

let root: AppRoot;
let prometheus: Prometheus | undefined;

afterEach(async () => {
  // Masters a deploy or rollback started, whose pids the test never saw.
  if (root !== undefined) for (const pid of mastersIn(root.dir)) track(pid);
  killAll();
  await prometheus?.stop();
  prometheus = undefined;
  root?.remove();
});

/** One scrape: status and body, on a connection of its own (TCP `host:port` or a Unix path). */
function scrape(where: string, path = '/metrics'): Promise<{ status: number; text: string }> {
  const target = where.startsWith('/')
    ? { socketPath: where }
    : { host: '127.0.0.1', port: Number(where.split(':').pop()) };
  return new Promise((resolve, reject) => {
    const req = http.get({ ...target, path, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('scrape timed out')));
    req.on('error', reject);
  });
}

/** The value of one sample line, or undefined when the exposition has none. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Times (unix seconds) at which a counter series rose from one raw sample to the next. */
function rises(series: RangeSeries[]): number[] {
  const times: number[] = [];
  for (const s of series) {
    for (let i = 1; i < s.values.length; i += 1) {
      const [, before] = s.values[i - 1] as Sample;
      const [at, now] = s.values[i] as Sample;
      if (Number(now) > Number(before)) times.push(at);
    }
  }
  return times.sort((a, b) => a - b);
}

const now = () => Date.now() / 1000;

describe('metrics (--metrics-bind)', () => {
  it('a real Prometheus follows one endpoint across a deploy and a rollback under load: counters by release, never down', async () => {
    root = makeAppRoot();
    const metricsPort = await freePort();
    const master = await startMaster(root.dir, [
      'releases/v1',
      '--metrics-bind',
      `127.0.0.1:${metricsPort}`,
    ]);
    prometheus = await startPrometheus(`127.0.0.1:${metricsPort}`);
    const prom = prometheus;
    const started = now();
    const load = startClientLoad(master.url, { connections: 4, durationSec: 120 });
    const serving = async () =>
      (await prom.query<{ metric: { release: string } }>('prefork_release_info'))[0]?.metric
        .release;
    /** When Prometheus saw the release's 2xx counter rise, from its raw samples. */
    const risesOf = async (release: string) =>
      rises(
        await prom.samples(
          `prefork_http_requests_total{code="2xx",release="${release}"}`,
          now() - started + 5,
        ),
      );
    await waitFor(
      'Prometheus to see v1’s counter rise',
      async () => (await risesOf('v1')).length > 0,
      30_000,
    );

    const deployStart = now();
    const deployed = await runPrefork(['deploy', 'v2', '--root', root.dir, '--verify-window', '1']);
    expect(deployed.code, deployed.stdout + deployed.stderr).toBe(0);
    const deployEnd = now();
    await waitFor('Prometheus to see v2 serve', async () => (await serving()) === 'v2', 30_000);
    await waitFor('v2’s counter to rise', async () => (await risesOf('v2')).length > 0, 30_000);
    // A scrape of two masters, mid-deploy, is checked below; this one is after the deploy.
    const afterDeploy = await scrape(`127.0.0.1:${metricsPort}`);
    expect(promtoolCheck(afterDeploy.text)).toBe('');
    expect(value(afterDeploy.text, 'prefork_deploys_total{outcome="succeeded"}')).toBe(1);

    const rollbackStart = now();
    const rolledBack = await runPrefork(['rollback', '--root', root.dir, '--verify-window', '1']);
    expect(rolledBack.code, rolledBack.stdout + rolledBack.stderr).toBe(0);
    const rollbackEnd = now();
    await waitFor(
      'Prometheus to see v1 serve again',
      async () => (await serving()) === 'v1',
      30_000,
    );
    await waitFor(
      'v1 requests counted again after the rollback',
      async () => {
        const v1 = rises(
          await prom.samples(
            'prefork_http_requests_total{code="2xx",release="v1"}',
            now() - started + 5,
          ),
        );
        return v1.some((t) => t > rollbackEnd + 1);
      },
      30_000,
    );
    const result = await load.stop();
    expect(result.failed, JSON.stringify(result)).toBe(0);

    const v1 = await risesOf('v1');
    const v2 = await risesOf('v2');
    // v1 rose before the deploy, v2 between the deploy and the rollback, v1 again after it.
    expect(v1.some((t) => t < deployStart)).toBe(true);
    expect(v2.some((t) => t > deployStart && t < rollbackStart)).toBe(true);
    expect(v2.every((t) => t > deployStart)).toBe(true);
    expect(v1.some((t) => t > rollbackEnd)).toBe(true);
    expect(deployEnd).toBeLessThan(rollbackStart);
    // The target never went down: every scrape across both master changes succeeded.
    const [up] = await prom.samples('up{job="prefork"}', now() - started + 5);
    const ups = (up?.values ?? []).map(([, v]) => Number(v));
    expect(ups.length).toBeGreaterThan(5);
    expect(
      ups.every((v) => v === 1),
      JSON.stringify(up?.values),
    ).toBe(true);
    expect(await serving()).toBe('v1');
    const [deploys] = await prom.query<{ value: [number, string] }>(
      'prefork_deploys_total{outcome="succeeded"}',
    );
    expect(Number(deploys?.value[1])).toBe(2);
    // Each run was annotated while it lasted: its kind, release and step, then gone.
    const steps = await prom.samples('prefork_deploy_step', now() - started + 5);
    const seen = steps.map((s) => `${s.metric.kind} ${s.metric.release}`);
    expect(seen).toContain('deploy v2');
    expect(seen).toContain('rollback v1');
    expect(await prom.query('prefork_deploy_step')).toEqual([]);
  });

  it('during an upgrade every scrape shows both masters’ workers, on a Unix socket the new master keeps when the old exits', async () => {
    root = makeAppRoot();
    const socketPath = root.path('metrics.sock');
    const old = await startMaster(root.dir, [
      'releases/v1',
      '--metrics-bind',
      `unix:${socketPath}`,
    ]);
    // Requests to v1 before the upgrade: the old master's share carries them.
    for (let i = 0; i < 20; i += 1) await fetch(old.url).then((r) => r.text());
    await waitFor('v1 figures', async () => {
      const { text } = await scrape(socketPath);
      return value(text, 'prefork_http_requests_total{release="v1",code="2xx"}') === 20;
    });
    switchCurrent(root, 'v2');
    const fresh: RunningMaster = await upgrade(old);
    for (let i = 0; i < 20; i += 1) {
      const { status, text } = await scrape(socketPath);
      expect(status).toBe(200);
      expect(value(text, 'prefork_masters')).toBe(2);
      expect(value(text, 'prefork_workers{release="v1",state="ready"}')).toBe(2);
      expect(value(text, 'prefork_workers{release="v2",state="ready"}')).toBe(2);
      expect(value(text, 'prefork_http_requests_total{release="v1",code="2xx"}')).toBe(20);
      expect(value(text, 'prefork_release_info{release="v2",version="2.0.0"}')).toBe(1);
      if (i === 0) expect(promtoolCheck(text)).toBe('');
    }
    // Scrapes in a loop while the old master stops: each one answered, none lost.
    let scraping = true;
    const outcomes: string[] = [];
    const loops = Array.from({ length: 3 }, async () => {
      while (scraping) {
        try {
          const { status, text } = await scrape(socketPath);
          outcomes.push(status === 200 && text.includes('prefork_masters') ? 'ok' : `${status}`);
        } catch (error) {
          outcomes.push((error as NodeJS.ErrnoException).code ?? String(error));
        }
      }
    });
    process.kill(old.pid, 'SIGWINCH');
    process.kill(old.pid, 'SIGQUIT');
    await waitFor('the old master to exit', () => !alive(old.pid));
    const after = outcomes.length;
    await waitFor('scrapes after the old master left', () => outcomes.length > after + 20);
    scraping = false;
    await Promise.all(loops);
    expect(outcomes.filter((o) => o !== 'ok')).toEqual([]);
    expect(existsSync(socketPath)).toBe(true);
    const { text } = await scrape(socketPath);
    expect(value(text, 'prefork_masters')).toBe(1);
    expect(value(text, 'prefork_workers{release="v2",state="ready"}')).toBe(2);
    expect(text).not.toMatch(/prefork_workers\{release="v1"/);
    expect(mastersIn(root.dir)).toEqual([fresh.pid]);
    // A path the bind does not serve is turned away; `/` is the live page (live-view.test.ts),
    // and no file outside its own is served under /ui/.
    expect((await scrape(socketPath, '/nothing')).status).toBe(404);
    expect((await scrape(socketPath, '/ui/../../package.json')).status).toBe(404);
    expect((await scrape(socketPath, '/ui/control/client.js')).status).toBe(404);
    const page = await scrape(socketPath, '/');
    expect(page.status).toBe(200);
    expect(page.text).toContain('<script type="module" src="/ui/view/web/page.js">');
    // The last master to stop removes the socket file.
    process.kill(fresh.pid, 'SIGTERM');
    await waitFor('the master to exit', () => !alive(fresh.pid));
    expect(existsSync(socketPath)).toBe(false);
  });

  it('status shows each release’s request rate and 5xx share; exec-less 5xx are counted by class', async () => {
    root = makeAppRoot();
    root.addRelease(
      'flaky',
      listenerRelease(
        'flaky',
        '',
        "if (req.url === '/fail') { res.statusCode = 503; res.end('no'); return; }",
      ),
    );
    const metricsPort = await freePort();
    const master = await startMaster(root.dir, [
      'releases/flaky',
      '--metrics-bind',
      `127.0.0.1:${metricsPort}`,
    ]);
    for (let i = 0; i < 30; i += 1) {
      await fetch(`${master.url}${i % 3 === 0 ? '/fail' : '/'}`).then((r) => r.text());
    }
    const text = await waitFor('the figures of 30 requests', async () => {
      const { text } = await scrape(`127.0.0.1:${metricsPort}`);
      return value(text, 'prefork_http_requests_total{release="flaky",code="5xx"}') === 10 && text;
    });
    expect(value(text, 'prefork_http_requests_total{release="flaky",code="2xx"}')).toBe(20);
    expect(value(text, 'prefork_http_request_duration_seconds_count{release="flaky"}')).toBe(30);
    const status = await waitFor(
      'status to show the traffic',
      async () => {
        const { stdout } = await runPrefork(['status', '--root', root.dir]);
        return /traffic \[flaky\]: [\d.]+ req\/s, 33\.3% 5xx/.test(stdout) && stdout;
      },
      30_000,
    );
    expect(status).toContain(`metrics: 127.0.0.1:${metricsPort}`);
  });

  it('refuses a bad --metrics-bind at start (exit 2, nothing started) and on HUP (the master keeps its own)', async () => {
    root = makeAppRoot();
    const taken = await freePort();
    const start = (...args: string[]) =>
      runPrefork(['start', 'releases/v1', '--root', root.dir, '--workers', '1', ...args]);
    const same = await start(
      '--bind',
      `127.0.0.1:${taken}`,
      '--metrics-bind',
      `127.0.0.1:${taken}`,
    );
    expect(same.code).toBe(2);
    expect(same.stderr).toMatch(/--metrics-bind "127\.0\.0\.1:\d+" is also an app bind/);
    const wildcard = await start('--bind', `:${taken}`, '--metrics-bind', `127.0.0.1:${taken}`);
    expect(wildcard.code).toBe(2);
    const garbage = await start('--bind', '127.0.0.1:0', '--metrics-bind', 'localhost');
    expect(garbage.code).toBe(2);
    expect(garbage.stderr).toMatch(/--metrics-bind: bad bind "localhost": no port/);
    const blocker = http.createServer();
    await new Promise<void>((resolve) => blocker.listen(taken, '127.0.0.1', resolve));
    try {
      const inUse = await start('--bind', '127.0.0.1:0', '--metrics-bind', `127.0.0.1:${taken}`);
      expect(inUse.code).toBe(2);
      expect(inUse.stderr).toMatch(
        /cannot bind 127\.0\.0\.1:\d+ \(--metrics-bind\): the address is already in use: stop whatever listens there, or pick another --metrics-bind/,
      );
    } finally {
      blocker.close();
    }
    expect(existsSync(root.path('prefork.pid'))).toBe(false);
    expect(mastersIn(root.dir)).toEqual([]);

    // A running master whose metricsBind comes from its config file: a bad one is refused on
    // HUP, naming the key and the file, and the master keeps serving on its own.
    const metricsPort = await freePort();
    writeFileSync(
      root.path('prefork.config.json'),
      JSON.stringify({ metricsBind: `127.0.0.1:${metricsPort}` }),
    );
    const master = await startMaster(root.dir, ['releases/v1'], { workers: 1 });
    expect((await scrape(`127.0.0.1:${metricsPort}`)).status).toBe(200);
    writeFileSync(root.path('prefork.config.json'), JSON.stringify({ metricsBind: 'nonsense' }));
    process.kill(master.pid, 'SIGHUP');
    await master.proc.waitForLog(
      /reload refused: "metricsBind" in .*prefork\.config\.json: bad bind "nonsense"/,
    );
    expect((await scrape(`127.0.0.1:${metricsPort}`)).status).toBe(200);
    expect(master.workers()).toHaveLength(1);
  });

  it('answers a scrape while the master stops gracefully, its workers draining', async () => {
    root = makeAppRoot();
    root.addRelease(
      'slow',
      listenerRelease(
        'slow',
        '',
        "if (req.url === '/slow') { setTimeout(() => res.end('late'), 3000); return; }",
      ),
    );
    const metricsPort = await freePort();
    const master = await startMaster(
      root.dir,
      ['releases/slow', '--metrics-bind', `127.0.0.1:${metricsPort}`],
      { workers: 1 },
    );
    const slow = fetch(`${master.url}/slow`).then((r) => r.text());
    await waitFor('the slow request to reach the worker', async () => {
      const { text } = await scrape(`127.0.0.1:${metricsPort}`);
      return text.includes('prefork_workers{release="slow",state="ready"} 1');
    });
    process.kill(master.pid, 'SIGQUIT');
    const { status, text } = await waitFor('a scrape of the stopping master', async () => {
      const answer = await scrape(`127.0.0.1:${metricsPort}`);
      return answer.text.includes('prefork_workers{release="slow",state="draining"} 1') && answer;
    });
    expect(status).toBe(200);
    expect(text).toContain('prefork_workers{release="slow",state="ready"} 0');
    expect(await slow).toBe('late');
    await waitFor('the master to exit', () => !alive(master.pid));
    await expect(scrape(`127.0.0.1:${metricsPort}`)).rejects.toThrow(/ECONNREFUSED/);
  });
});
