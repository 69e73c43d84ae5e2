import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { track, waitFor } from './processes.js';

/** A command on PATH, or a failure that says how to install it. */
function needCommand(name: string): void {
  if (spawnSync('sh', ['-c', `command -v ${name}`]).status !== 0) {
    throw new Error(
      `${name} is not installed: apt-get install --no-install-recommends prometheus (.ci/run does)`,
    );
  }
}

/** One raw sample of a range query: [unix seconds, value as Prometheus spells it]. */
export type Sample = [number, string];

/** A series of a range-vector query: its labels and raw samples. */
export interface RangeSeries {
  metric: Record<string, string>;
  values: Sample[];
}

/** A Prometheus server started for one test: loopback only, throwaway storage. */
export interface Prometheus {
  url: string;
  /** An instant query; the result vector or matrix. */
  query<T = unknown>(promql: string): Promise<T[]>;
  /** A range-vector selector's raw samples (`metric[5m]`), per series. */
  samples(selector: string, seconds: number): Promise<RangeSeries[]>;
  stop(): Promise<void>;
}

/**
 * Starts Debian's `prometheus` scraping `target` (`host:port`, job `prefork`) every second,
 * with its storage in a fresh temporary directory, and waits until it is ready.
 */
export async function startPrometheus(target: string): Promise<Prometheus> {
  needCommand('prometheus');
  const dir = mkdtempSync(join(tmpdir(), 'prefork-prometheus-'));
  const config = join(dir, 'prometheus.yml');
  writeFileSync(
    config,
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      '  - job_name: prefork',
      '    static_configs:',
      `      - targets: ['${target}']`,
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  track(child.pid);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  let exited = false;
  const gone = new Promise<void>((resolve) =>
    child.on('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const get = async (path: string): Promise<unknown> => {
    const response = await fetch(`${url}${path}`);
    const body = (await response.json()) as { status: string; data: unknown; error?: string };
    if (body.status !== 'success') throw new Error(`${path}: ${body.error}`);
    return body.data;
  };
  const prometheus: Prometheus = {
    url,
    async query<T>(promql: string): Promise<T[]> {
      const data = (await get(`/api/v1/query?query=${encodeURIComponent(promql)}`)) as {
        result: T[];
      };
      return data.result;
    },
    samples(selector: string, seconds: number) {
      return prometheus.query<RangeSeries>(`${selector}[${Math.ceil(seconds)}s]`);
    },
    async stop() {
      if (!exited) child.kill('SIGTERM');
      await gone;
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await waitFor(
    `prometheus to be ready on ${url} (stderr: ${stderr.slice(-1000)})`,
    async () => {
      if (exited) throw new Error(`prometheus exited: ${stderr.slice(-2000)}`);
      try {
        return (await fetch(`${url}/-/ready`)).ok;
      } catch {
        return false;
      }
    },
    30_000,
  );
  return prometheus;
}

/** `promtool check metrics` on an exposition: its complaints, or '' when it passes. */
export function promtoolCheck(exposition: string): string {
  needCommand('promtool');
  const result = spawnSync('promtool', ['check', 'metrics'], {
    input: exposition,
    encoding: 'utf8',
  });
  return result.status === 0 ? '' : `${result.stdout}${result.stderr}` || `exit ${result.status}`;
}
