import http from 'node:http';
import https from 'node:https';
import { controlRequest, controlSocketPath } from '../control/client.js';
import type { MasterStatus, WorkerHealth } from '../control/schema.js';
import { grpcHealthCall, grpcVerdict, healthService } from '../grpc/grpc-health.js';
import { h2Get, openH2 } from '../http2/h2-get.js';
import type { HttpProtocol } from '../protocol/ipc.js';
import { HEALTH_REQUEST_MS, WORKER_CHECK_MARGIN_MS } from '../wait/timeouts.js';

/** Where health checks go: the master's first TCP bind. */
export interface HealthTarget {
  host: string;
  port: number;
  /** `--health-path`; without it any answer below 500 to `/` counts as healthy. */
  path: string | undefined;
  /** The workers serve HTTPS: check over TLS. */
  tls: boolean;
  /** What the workers speak: HTTP/2 releases are checked over HTTP/2. */
  http: HttpProtocol;
}

/**
 * Where to check `master`: its first TCP bind (a status address such as `127.0.0.1:8000`,
 * `[::1]:8000` or `[::]:8000`), over TLS when its workers serve HTTPS; undefined without a TCP
 * bind.
 */
export function healthTarget(
  master: Pick<MasterStatus, 'binds' | 'workers'>,
  path: string | undefined,
): HealthTarget | undefined {
  const tls = master.workers.some((worker) => worker.tls);
  const http = master.workers.find((worker) => worker.http !== 'http/1.1')?.http ?? 'http/1.1';
  for (const bind of master.binds) {
    const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(bind);
    if (!match || bind.startsWith('unix:')) continue;
    let host = match[1] ?? '';
    if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
    if (host === '::') host = '::1';
    return { host, port: Number(match[2]), path, tls, http };
  }
  return undefined;
}

/** What a failed health check saw: what was wrong, and whether any answer came. */
export interface HealthProblem {
  problem: string;
  /** False when the connection failed or closed before an answer (a reset, a hang-up, a timeout). */
  answered: boolean;
}

/**
 * One health check on a fresh connection: resolves with what was wrong, or undefined when
 * healthy (2xx with a health path; below 500 without). Over TLS the certificate is not
 * verified: the check reaches the master's own bind on loopback, by address, which the name
 * on a service's certificate rarely matches; what it checks is that the app answers.
 */
export function checkHealthOnce(
  target: HealthTarget,
  timeoutMs = HEALTH_REQUEST_MS,
): Promise<HealthProblem | undefined> {
  const path = target.path ?? '/';
  if (target.http === 'grpc') return checkGrpcOnce(target, path, timeoutMs);
  if (target.http !== 'http/1.1') return checkHttp2Once(target, path, timeoutMs);
  return new Promise((resolve) => {
    const req = (target.tls ? https : http).get(
      {
        host: target.host,
        port: target.port,
        path,
        agent: false,
        rejectUnauthorized: false,
        headers: { connection: 'close' },
      },
      (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        resolve(
          isHealthy(status, target.path)
            ? undefined
            : { problem: `GET ${path} answered ${status}`, answered: true },
        );
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (error) =>
      resolve({ problem: `GET ${path} failed: ${error.message}`, answered: false }),
    );
  });
}

/** The HTTP/2 authority of `target`: h2c with prior knowledge, or h2 over TLS by ALPN. */
function authorityOf(target: HealthTarget): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return `${target.tls ? 'https' : 'http'}://${host}:${target.port}`;
}

/**
 * {@link checkHealthOnce} of a gRPC release: the standard health service's check of the
 * service the health path names (`healthService`), read as `grpcVerdict` does.
 */
async function checkGrpcOnce(
  target: HealthTarget,
  path: string,
  timeoutMs: number,
): Promise<HealthProblem | undefined> {
  const session = openH2(authorityOf(target));
  const service = healthService(path);
  try {
    const verdict = grpcVerdict(await grpcHealthCall(session, service, { timeoutMs }), service);
    if (isHealthy(verdict.status, target.path)) return undefined;
    return { problem: verdict.problem ?? `answered ${verdict.status}`, answered: true };
  } catch (error) {
    const problem = `gRPC health check of ${service || 'the server'} failed: ${(error as Error).message}`;
    return { problem, answered: false };
  } finally {
    session.close();
  }
}

/** {@link checkHealthOnce} over HTTP/2: h2c with prior knowledge, or h2 over TLS by ALPN. */
async function checkHttp2Once(
  target: HealthTarget,
  path: string,
  timeoutMs: number,
): Promise<HealthProblem | undefined> {
  const session = openH2(authorityOf(target));
  try {
    const status = await h2Get(session, path, { timeoutMs });
    if (isHealthy(status, target.path)) return undefined;
    return { problem: `GET ${path} (HTTP/2) answered ${status}`, answered: true };
  } catch (error) {
    return { problem: `GET ${path} (HTTP/2) failed: ${(error as Error).message}`, answered: false };
  } finally {
    session.close();
  }
}

/** {@link checkHealthOnce}, as what was wrong or undefined. */
export async function checkHealth(
  target: HealthTarget,
  timeoutMs = HEALTH_REQUEST_MS,
): Promise<string | undefined> {
  return (await checkHealthOnce(target, timeoutMs))?.problem;
}

/** 2xx with a health path; any answer below 500 to `/` without one. */
function isHealthy(status: number, healthPath: string | undefined): boolean {
  return healthPath ? status >= 200 && status < 300 : status < 500;
}

/**
 * Asks the master with `pid` to have each of its serving workers GET the health path (`/`
 * without one) from its own app, and resolves with what was wrong, or undefined when every
 * worker is healthy. This reaches the master's own release even while another generation's
 * workers accept on the same sockets, where a check through the bind could be answered by
 * either.
 */
export async function checkWorkers(
  root: string,
  pid: number,
  healthPath: string | undefined,
  { heartbeatTimeoutS }: { heartbeatTimeoutS: number },
): Promise<string | undefined> {
  const path = healthPath ?? '/';
  let workers: WorkerHealth[];
  try {
    // A busy worker may take up to its heartbeat timeout to get the request to its app, which
    // then has HEALTH_ANSWER_MS (src/worker/self-check.ts): the master answers within those.
    workers = await controlRequest(
      controlSocketPath(root, pid),
      { cmd: 'health', path },
      heartbeatTimeoutS * 1000 + WORKER_CHECK_MARGIN_MS,
    );
  } catch (error) {
    return `cannot ask master ${pid} to check its workers: ${(error as Error).message}`;
  }
  if (workers.length === 0) return `master ${pid} has no serving worker to check`;
  for (const worker of workers) {
    const where = `(worker ${worker.pid}, asked through master ${pid})`;
    if (worker.status === null) return `no answer to GET ${path} ${where}: ${worker.error}`;
    if (!isHealthy(worker.status, healthPath)) {
      // A gRPC worker says what its health service answered.
      return `${worker.error ?? `GET ${path} answered ${worker.status}`} ${where}`;
    }
  }
  return undefined;
}
