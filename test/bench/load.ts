/**
 * The bench's load generators: autocannon (always; a dev dependency) and wrk (as a cross-check,
 * where it is installed). Both run at saturation (a fixed number of connections, each sending
 * its next request as soon as the last one is answered) until a duration ends or a scenario
 * is over.
 */
import { spawn, spawnSync } from 'node:child_process';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type autocannonType from 'autocannon';

/** Connections every load keeps open (the "50 keep-alive connections"). */
export const CONNECTIONS = 50;

/** What one load run saw. Latencies in ms. */
export interface LoadFigures {
  tool: 'autocannon' | 'wrk';
  requests: number;
  rps: number;
  /** Requests that got no 2xx answer: errors by kind, timeouts and non-2xx statuses. */
  failed: number;
  failedByKind: Record<string, number>;
  p50: number;
  p99: number;
  max: number;
}

/** Every response's time and latency, to cut a run into windows (steady, deploying). */
export interface Samples {
  /** `performance.now()` when each response arrived. */
  at: Float64Array;
  latency: Float64Array;
  /** With `pids`: the pid in each response's body (the bundled releases say who answered), or 0. */
  pid?: Int32Array;
  count: number;
}

type Autocannon = typeof autocannonType;
let autocannon: Autocannon | undefined;

/** How a load stops: after `seconds`, or as soon as `until` settles. */
export interface LoadOptions {
  seconds: number;
  /** Send `Connection: close` on every request (a new connection per request). */
  close?: boolean;
  until?: Promise<unknown>;
  /** Connections (default {@link CONNECTIONS}). */
  connections?: number;
  /** Read the answering worker's pid from each body into {@link Samples.pid}. */
  pids?: boolean;
  /** Requests per second over all connections (default: as fast as answered). */
  rate?: number;
}

/** Runs autocannon and returns its figures with every response's time and latency. */
export async function autocannonLoad(
  url: string,
  options: LoadOptions,
): Promise<{ figures: LoadFigures; samples: Samples }> {
  autocannon ??= ((await import('autocannon')) as { default: Autocannon }).default;
  const capacity = 8_000_000;
  const samples: Samples = {
    at: new Float64Array(capacity),
    latency: new Float64Array(capacity),
    ...(options.pids ? { pid: new Int32Array(capacity) } : {}),
    count: 0,
  };
  const kinds: Record<string, number> = {};
  // The body of the latest response, read before its 'response' event (autocannon calls a
  // request's onResponse first).
  let pid = 0;
  const instance = autocannon(
    {
      url,
      connections: options.connections ?? CONNECTIONS,
      duration: options.seconds,
      headers: options.close ? { connection: 'close' } : {},
      ...(options.rate === undefined ? {} : { overallRate: options.rate }),
      ...(options.pids
        ? {
            requests: [
              {
                onResponse: (_status: number, body: string) => {
                  pid = Number(/"pid":(\d+)/.exec(body)?.[1] ?? 0);
                },
              },
            ],
          }
        : {}),
    },
    () => {},
  );
  instance.on('response', (_client, _status, _bytes, latency: number) => {
    if (samples.count < capacity) {
      samples.at[samples.count] = performance.now();
      samples.latency[samples.count] = latency;
      if (samples.pid) samples.pid[samples.count] = pid;
      samples.count += 1;
    }
  });
  instance.on('reqError', (error: NodeJS.ErrnoException) => {
    const kind = error.code ?? error.message;
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  });
  const done = new Promise<autocannonType.Result>((resolve) => instance.on('done', resolve));
  if (options.until) void options.until.finally(() => instance.stop());
  const result = await done;
  if (result.non2xx > 0) kinds['non-2xx'] = result.non2xx;
  return {
    figures: {
      tool: 'autocannon',
      requests: result.requests.total,
      rps: Math.round(result.requests.average),
      failed: result.errors + result.non2xx,
      failedByKind: kinds,
      p50: result.latency.p50,
      p99: result.latency.p99,
      max: result.latency.max,
    },
    samples,
  };
}

/** The `p` quantile (0..1) of the latencies of responses that arrived within `windows`. */
export function windowQuantile(samples: Samples, windows: [number, number][], p: number): number {
  const picked: number[] = [];
  for (let i = 0; i < samples.count; i += 1) {
    const at = samples.at[i] as number;
    if (windows.some(([from, to]) => at >= from && at < to)) {
      picked.push(samples.latency[i] as number);
    }
  }
  if (picked.length === 0) return 0;
  picked.sort((a, b) => a - b);
  return picked[Math.min(picked.length - 1, Math.floor(picked.length * p))] as number;
}

/** hey's version (Debian's package), or undefined where it is not installed. */
export function heyVersion(): string | undefined {
  if (spawnSync('hey', ['-h']).error) return undefined;
  const probe = spawnSync('dpkg-query', ['-W', `-f=\${Version}`, 'hey'], { encoding: 'utf8' });
  return probe.status === 0 ? probe.stdout.trim() : 'unknown';
}

/**
 * hey's version, installing Debian's package first where hey is missing and this process may
 * (root, with apt-get). Undefined when hey cannot be had.
 */
export function ensureHey(): string | undefined {
  return heyVersion() ?? (aptInstall('hey') ? heyVersion() : undefined);
}

/**
 * Runs hey (Go's HTTP client: `Connection: close` from the server is honoured, the request
 * goes on a new connection and its time includes the connect) with `connections` kept-alive
 * connections until `until` settles, recording every answered request's arrival time
 * (`performance.now()`) and latency (ms). Requests that got no answer are not in hey's CSV.
 */
export function heyLoad(
  url: string,
  options: { connections: number; until: Promise<unknown> },
): Promise<Samples> {
  const started = performance.now();
  const child = spawn('hey', ['-z', '600s', '-c', String(options.connections), '-o', 'csv', url], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  // hey stops and prints its report on SIGINT.
  void options.until.finally(() => child.kill('SIGINT'));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', () => {
      const rows = output.split('\n').slice(1);
      const samples: Samples = {
        at: new Float64Array(rows.length),
        latency: new Float64Array(rows.length),
        count: 0,
      };
      for (const row of rows) {
        const fields = row.split(',');
        if (fields.length < 8) continue;
        const seconds = Number(fields[0]);
        const offset = Number(fields[7]);
        samples.at[samples.count] = started + (offset + seconds) * 1000;
        samples.latency[samples.count] = seconds * 1000;
        samples.count += 1;
      }
      resolve(samples);
    });
  });
}

/** `apt-get install` of a Debian package, as root; false when it cannot be done. */
function aptInstall(name: string): boolean {
  if (process.getuid?.() !== 0 || spawnSync('apt-get', ['--version']).error) return false;
  process.stderr.write(`prefork bench: installing ${name} (apt-get install ${name})\n`);
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '-qq', name], {
      stdio: 'ignore',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    }).status === 0;
  if (install()) return true;
  spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
  return install();
}

/** wrk's version, or undefined where it is not installed. */
export function wrkVersion(): string | undefined {
  const probe = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  if (probe.error) return undefined;
  return /wrk (\S+)/.exec(`${probe.stdout}${probe.stderr}`)?.[1] ?? 'unknown';
}

/**
 * wrk's version, installing Debian's package first where wrk is missing and this process may
 * (root, with apt-get). Undefined when wrk cannot be had: the bench then runs without it.
 */
export function ensureWrk(): string | undefined {
  return wrkVersion() ?? (aptInstall('wrk') ? wrkVersion() : undefined);
}

/** A wrk duration ("1.50ms", "2.1s", "800us") in ms. */
function wrkMs(text: string | undefined): number {
  const match = /([\d.]+)(us|ms|s|m)/.exec(text ?? '');
  if (!match) return 0;
  const scale = { us: 0.001, ms: 1, s: 1000, m: 60_000 }[match[2] as 'us' | 'ms' | 's' | 'm'];
  return Math.round(Number(match[1]) * scale * 100) / 100;
}

/** Reads wrk's report: requests, socket errors by kind, non-2xx, latency distribution. */
export function parseWrk(output: string): LoadFigures {
  const kinds: Record<string, number> = {};
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
    output,
  );
  if (socket) {
    for (const [index, kind] of ['connect', 'read', 'write', 'timeout'].entries()) {
      const count = Number(socket[index + 1]);
      if (count > 0) kinds[kind] = count;
    }
  }
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  if (non2xx > 0) kinds['non-2xx'] = non2xx;
  return {
    tool: 'wrk',
    requests: Number(/(\d+) requests in/.exec(output)?.[1] ?? 0),
    rps: Math.round(Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? 0)),
    failed: Object.values(kinds).reduce((sum, n) => sum + n, 0),
    failedByKind: kinds,
    p50: wrkMs(/^\s*50%\s+(\S+)/m.exec(output)?.[1]),
    p99: wrkMs(/^\s*99%\s+(\S+)/m.exec(output)?.[1]),
    max: wrkMs(/^\s*Latency\s+\S+\s+\S+\s+(\S+)/m.exec(output)?.[1]),
  };
}

/** Runs wrk (2 threads) until `options.until` settles, or for `options.seconds`. */
export function wrkLoad(url: string, options: LoadOptions): Promise<LoadFigures> {
  const args = ['-t2', `-c${CONNECTIONS}`, `-d${options.seconds}s`, '--latency'];
  if (options.close) args.push('-H', 'Connection: close');
  const child = spawn('wrk', [...args, url], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  // wrk stops and prints its report on SIGINT.
  if (options.until) void options.until.finally(() => child.kill('SIGINT'));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', () => resolve(parseWrk(output)));
  });
}

/** A {@link timedLoad}: each answer's [`performance.now()`, latency ms], and failures. */
export interface TimedLoad {
  timings: [number, number][];
  failed(): number;
  stop(): Promise<void>;
}

/**
 * Kept-alive HTTP/1.1 GETs of `/` on `connections` connections, one request at a time each
 * (`gapMs` apart: 0 is back to back), timing every answer. Node's agent honours a server's
 * `Connection: close`, so a drain's reconnects are not counted as late answers.
 */
export function timedLoad(port: number, connections: number, gapMs = 0): TimedLoad {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const timings: [number, number][] = [];
  let failed = 0;
  let stopped = false;
  const lane = async () => {
    while (!stopped) {
      const started = performance.now();
      await new Promise<void>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
          res.resume();
          res.on('end', () => {
            const now = performance.now();
            timings.push([now, now - started]);
            resolve();
          });
        });
        req.on('error', () => {
          failed += 1;
          resolve();
        });
      });
      if (gapMs > 0) await new Promise((resolve) => setTimeout(resolve, gapMs));
    }
  };
  const lanes = Array.from({ length: connections }, lane);
  return {
    timings,
    failed: () => failed,
    stop: async () => {
      stopped = true;
      await Promise.all(lanes);
      agent.destroy();
    },
  };
}
