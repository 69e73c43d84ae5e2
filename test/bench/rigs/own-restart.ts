/**
 * A Debian-packaged server run on its own, bound to its own port, restarting itself the way its
 * documentation says to restart without downtime: Gunicorn's HUP (new workers, the old ones
 * stopped gracefully) and USR2 (a new arbiter, then TERM to the old one), Puma's phased restart
 * (USR1, cluster mode: one worker at a time). The app is the one in `docs/examples/<server>`.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { poll } from '../../../src/wait/wait.js';
import { REPO } from '../../helpers/app-root.js';
import { alive, childrenOf } from '../../helpers/processes.js';
import { freePort, waitForHttp } from './rig.js';

/** How a server restarts itself. */
export interface OwnRestart {
  how:
    | 'HUP'
    | 'USR2, TERM old'
    | 'HUP (Gunicorn, UvicornWorker)'
    | 'phased restart (USR1, 2 workers)';
  server: 'gunicorn' | 'uvicorn' | 'puma';
  /** Settings, as the server's own flags. */
  args?: string[];
  env?: Record<string, string>;
}

/** A server on its own: where it answers, one restart, the end. */
export interface OwnServer {
  url: string;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const WORKERS = 2;

/** Waits until `pid` has WORKERS children, none of them in `old`. */
function newWorkers(pid: number, old: number[]): Promise<number[]> {
  return poll(
    () => {
      const now = childrenOf(pid);
      return now.length === WORKERS && now.every((c) => !old.includes(c)) ? now : undefined;
    },
    60_000,
    () => new Error(`the workers of ${pid} were not replaced within 60 s`),
    { everyMs: 50 },
  );
}

export async function startOwn(spec: OwnRestart): Promise<OwnServer> {
  const dir = mkdtempSync(join(tmpdir(), `prefork-own-${spec.server}-`));
  cpSync(join(REPO, 'docs/examples', spec.server), dir, { recursive: true });
  const port = await freePort();
  const pidfile = join(dir, 'server.pid');
  const [command, args] =
    spec.server === 'puma'
      ? [
          'puma',
          [
            '--workers',
            String(WORKERS),
            '--bind',
            `tcp://127.0.0.1:${port}`,
            '--pidfile',
            pidfile,
            '--quiet',
            ...(spec.args ?? []),
            'config.ru',
          ],
        ]
      : [
          'gunicorn',
          [
            '--bind',
            `127.0.0.1:${port}`,
            '--pid',
            pidfile,
            '--workers',
            String(WORKERS),
            ...(spec.server === 'uvicorn'
              ? ['--worker-class', 'uvicorn.workers.UvicornWorker']
              : []),
            ...(spec.args ?? []),
            'app:app',
          ],
        ];
  const child = spawn(command as string, args as string[], {
    cwd: dir,
    env: { ...process.env, ...spec.env },
    stdio: 'ignore',
  });
  let master = child.pid as number;
  const url = `http://127.0.0.1:${port}/`;
  try {
    await waitForHttp(url);
    await newWorkers(master, []);
  } catch (error) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url,
    async restart() {
      const old = childrenOf(master);
      if (spec.how === 'USR2, TERM old') {
        process.kill(master, 'SIGUSR2');
        // The new arbiter is the old one's child (its pidfile is `server.pid.2` in 20.1).
        const next = await poll(
          () => {
            const pid = childrenOf(master).find((c) => !old.includes(c));
            return pid !== undefined && childrenOf(pid).length === WORKERS ? pid : undefined;
          },
          60_000,
          () => new Error('no new Gunicorn arbiter within 60 s'),
          { everyMs: 50 },
        );
        process.kill(master, 'SIGTERM');
        const gone = master;
        await poll(
          () => (alive(gone) ? undefined : true),
          60_000,
          () => new Error('the old arbiter did not exit'),
        );
        master = next;
      } else {
        process.kill(
          master,
          spec.how === 'phased restart (USR1, 2 workers)' ? 'SIGUSR1' : 'SIGHUP',
        );
        await newWorkers(master, old);
      }
    },
    async stop() {
      for (const pid of [master, ...childrenOf(master)]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
