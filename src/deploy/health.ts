import http from 'node:http';
import { controlRequest, controlSocketPath } from '../control/client.js';
import type { WorkerHealth } from '../protocol/index.js';

/** Where health checks go: the master's first TCP bind. */
export interface HealthTarget {
  host: string;
  port: number;
  /** `--health-path`; without it any answer below 500 to `/` counts as healthy. */
  path: string | undefined;
}

/** Turns a status address (`127.0.0.1:8000`, `[::1]:8000`, `[::]:8000`) into a target. */
export function healthTarget(binds: string[], path: string | undefined): HealthTarget | undefined {
  for (const bind of binds) {
    const match = /^\[?([^\]]*)\]?:(\d+)$/.exec(bind);
    if (!match || bind.startsWith('unix:')) continue;
    let host = match[1] ?? '';
    if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
    if (host === '::') host = '::1';
    return { host, port: Number(match[2]), path };
  }
  return undefined;
}

/**
 * One health check on a fresh connection: resolves with what was wrong, or undefined when
 * healthy (2xx with a health path; below 500 without).
 */
export function checkHealth(target: HealthTarget, timeoutMs = 5000): Promise<string | undefined> {
  const path = target.path ?? '/';
  return new Promise((resolve) => {
    const req = http.get(
      {
        host: target.host,
        port: target.port,
        path,
        agent: false,
        headers: { connection: 'close' },
      },
      (res) => {
        res.resume();
        const status = res.statusCode ?? 0;
        resolve(isHealthy(status, target.path) ? undefined : `GET ${path} answered ${status}`);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (error) => resolve(`GET ${path} failed: ${error.message}`));
  });
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
): Promise<string | undefined> {
  const path = healthPath ?? '/';
  let workers: WorkerHealth[];
  try {
    workers = await controlRequest<WorkerHealth[]>(controlSocketPath(root, pid), {
      cmd: 'health',
      path,
    });
  } catch (error) {
    return `cannot ask master ${pid} to check its workers: ${(error as Error).message}`;
  }
  if (workers.length === 0) return `master ${pid} has no serving worker to check`;
  for (const worker of workers) {
    const where = `(worker ${worker.pid}, asked through master ${pid})`;
    if (worker.status === null) return `no answer to GET ${path} ${where}: ${worker.error}`;
    if (!isHealthy(worker.status, healthPath)) {
      return `GET ${path} answered ${worker.status} ${where}`;
    }
  }
  return undefined;
}
