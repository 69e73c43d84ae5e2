import http from 'node:http';

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
        const healthy = target.path ? status >= 200 && status < 300 : status < 500;
        resolve(healthy ? undefined : `GET ${path} answered ${status}`);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (error) => resolve(`GET ${path} failed: ${error.message}`));
  });
}
