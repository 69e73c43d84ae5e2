/**
 * `npm run bench:exec-servers`: servers no one here wrote (Debian's Gunicorn, Uvicorn and Puma,
 * and Go's common `Shutdown` idiom), each deployed by prefork as an exec release under kept-alive
 * load, next to the same server's own graceful restart under the same load, in the same run.
 *
 * Each row: a server with some settings; under prefork, `DEPLOYS` deploys between two releases
 * of it (2 workers); on its own, `DEPLOYS` of its own restarts (Gunicorn HUP and USR2, Puma's
 * phased restart). The load is Node's HTTP client, `CONNECTIONS` kept-alive connections through
 * an agent (as real clients send: it stops using a connection once an answer says
 * `Connection: close`). A failed request is a reset or an error answer.
 *
 * Needs gunicorn, python3-uvicorn, puma, ruby-sd-notify and golang-go (test/provision.sh
 * installs them). Prints a Markdown table; docs/exec-releases.md holds the last recorded run.
 */
import { execFileSync } from 'node:child_process';
import { type AppRoot, makeAppRoot } from '../helpers/app-root.js';
import { addExecRelease, addPackagedRelease, removeGoBuild } from '../helpers/exec-servers.js';
import { startClientLoad } from '../helpers/load.js';
import { freePort } from '../helpers/ports.js';
import { runPrefork } from '../helpers/processes.js';
import { type OwnRestart, startOwn } from './rigs/own-restart.js';
import { sleep } from './rigs/rig.js';

const DEPLOYS = Number(process.env.DEPLOYS ?? 3);
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 16);

/** A row of the table. */
interface Row {
  server: string;
  settings: string;
  /** Adds a release of this server with these settings to `root`. */
  release(root: AppRoot, name: string): void;
  /** The same server and settings restarting itself, if it can. */
  own: OwnRestart[];
}

const gthread = ['--worker-class', 'gthread', '--threads', '8', '--keep-alive', '5'];
const gunicorn = (args: string[]) => ({
  command: ['gunicorn', '--workers', '2', ...args, 'app:app'],
});
const puma = (threads: number) => ({
  command: [
    'puma',
    '--bind-to-activated-sockets',
    'only',
    '--threads',
    `${threads}:${threads}`,
    '--quiet',
    'config.ru',
  ],
});

const ROWS: Row[] = [
  {
    server: 'Gunicorn 20.1',
    settings: 'gthread, 8 threads, `--keep-alive 5`',
    release: (root, name) => addPackagedRelease(root, name, 'gunicorn', gunicorn(gthread)),
    own: [
      { how: 'HUP', server: 'gunicorn', args: ['--workers', '2', ...gthread] },
      { how: 'USR2, TERM old', server: 'gunicorn', args: ['--workers', '2', ...gthread] },
    ],
  },
  {
    server: 'Gunicorn 20.1',
    settings: 'sync worker (the default: no keep-alive)',
    release: (root, name) => addPackagedRelease(root, name, 'gunicorn'),
    own: [{ how: 'HUP', server: 'gunicorn', args: ['--workers', '2', '--worker-class', 'sync'] }],
  },
  {
    server: 'Uvicorn 0.17',
    settings: '`uvicorn --fd 3`, kept alive (Uvicorn as it comes)',
    release: (root, name) =>
      addPackagedRelease(root, name, 'uvicorn', {
        command: ['python3', '-m', 'uvicorn', '--fd', '3', '--no-access-log', 'app:app'],
        ready: { afterMs: 1500 },
        env: { KEEP_ALIVE: '1', PATH: '/usr/bin:/bin' },
      }),
    own: [],
  },
  {
    server: 'Uvicorn 0.17',
    settings: 'Gunicorn, 2 UvicornWorkers, kept alive',
    release: (root, name) =>
      addPackagedRelease(root, name, 'uvicorn', { env: { KEEP_ALIVE: '1' } }),
    own: [{ how: 'HUP (Gunicorn, UvicornWorker)', server: 'uvicorn', env: { KEEP_ALIVE: '1' } }],
  },
  {
    server: 'Uvicorn 0.17',
    settings: 'Gunicorn, 2 UvicornWorkers, the app answers `connection: close` (the example)',
    release: (root, name) => addPackagedRelease(root, name, 'uvicorn'),
    own: [{ how: 'HUP (Gunicorn, UvicornWorker)', server: 'uvicorn' }],
  },
  {
    server: 'Puma 5.6',
    settings: '5 threads (Puma 5 default)',
    release: (root, name) => addPackagedRelease(root, name, 'puma', puma(5)),
    own: [{ how: 'phased restart (USR1, 2 workers)', server: 'puma', args: ['--threads', '5:5'] }],
  },
  {
    server: 'Puma 5.6',
    settings: '16 threads',
    release: (root, name) => addPackagedRelease(root, name, 'puma', puma(16)),
    own: [
      { how: 'phased restart (USR1, 2 workers)', server: 'puma', args: ['--threads', '16:16'] },
    ],
  },
  {
    server: 'Puma 5.6',
    settings: '16 threads, `queue_requests false` (the example)',
    release: (root, name) => addPackagedRelease(root, name, 'puma'),
    own: [
      { how: 'phased restart (USR1, 2 workers)', server: 'puma', args: ['--config', 'puma.rb'] },
    ],
  },
  {
    server: 'Go net/http',
    settings: '`Shutdown` on SIGTERM',
    release: (root, name) =>
      addExecRelease(root, name, 'go', { command: ['./server', '-drain', 'shutdown'] }),
    own: [],
  },
  {
    server: 'Go net/http',
    settings: '`SetKeepAlivesEnabled(false)`, then `Shutdown`',
    release: (root, name) =>
      addExecRelease(root, name, 'go', { command: ['./server', '-drain', 'keepalives-off'] }),
    own: [],
  },
  {
    server: 'Go net/http',
    settings: 'close listeners, `Connection: close` 1 s, `Shutdown` (the example)',
    release: (root, name) => addExecRelease(root, name, 'go'),
    own: [],
  },
];

/** What a measured run saw. */
interface Measured {
  requests: number;
  failed: number;
  /** Requests answered per second over the run. */
  rate: number;
  /** The codes of the first errors. */
  kinds: string;
}

/** Runs `replace` `DEPLOYS` times under kept-alive load on `url`, a second apart. */
async function underLoad(
  url: string,
  replace: (round: number) => Promise<void>,
): Promise<Measured> {
  const started = Date.now();
  const load = startClientLoad(url, { connections: CONNECTIONS, durationSec: 600 });
  await sleep(1000);
  try {
    for (let round = 0; round < DEPLOYS; round += 1) {
      await replace(round);
      await sleep(1000);
    }
  } finally {
    await sleep(500);
  }
  const result = await load.stop();
  const kinds = new Set((result.firstErrors ?? []).map((line) => line.split(' ')[1] ?? '?'));
  if (result.non2xx > 0) kinds.add(`${result.non2xx} non-2xx`);
  return {
    requests: result.responses + result.errors,
    failed: result.failed,
    rate: Math.round(result.responses / ((Date.now() - started) / 1000)),
    kinds: [...kinds].join(', '),
  };
}

/** The row's releases under prefork: start on r1, deploy r2, r1, r2, ... */
async function underPrefork(row: Row): Promise<Measured> {
  const root = makeAppRoot();
  const args = ['--root', root.dir];
  try {
    row.release(root, 'r1');
    row.release(root, 'r2');
    const port = await freePort();
    const start = await runPrefork(
      [
        'start',
        'releases/r1',
        ...args,
        '--bind',
        `127.0.0.1:${port}`,
        '--workers',
        '2',
        '--daemon',
      ],
      { cwd: root.dir },
    );
    if (start.code !== 0) throw new Error(`prefork start: ${start.stderr}`);
    return await underLoad(`http://127.0.0.1:${port}/`, async (round) => {
      const deploy = await runPrefork(
        ['deploy', `releases/${round % 2 === 0 ? 'r2' : 'r1'}`, ...args],
        {
          cwd: root.dir,
        },
      );
      if (deploy.code !== 0)
        throw new Error(`prefork deploy: exit ${deploy.code}: ${deploy.stderr}`);
    });
  } finally {
    await runPrefork(['stop', ...args]);
    root.remove();
  }
}

function cell(m: Measured | Error): string {
  if (m instanceof Error) return `did not finish: ${m.message.split('\n')[0]?.slice(0, 120)}`;
  const failed = m.failed === 0 ? '0' : `**${m.failed}** (${m.kinds})`;
  return `${failed} of ${m.requests}, ${m.rate}/s`;
}

async function measure(what: () => Promise<Measured>): Promise<Measured | Error> {
  try {
    return await what();
  } catch (error) {
    return error as Error;
  }
}

function version(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8' }).trim().split('\n')[0] ?? '';
}

async function main(): Promise<void> {
  const lines = [
    `# Servers no one here wrote, replaced under ${CONNECTIONS} kept-alive connections (${DEPLOYS} each)`,
    '',
    `${version('gunicorn', ['--version'])}; ${version('/usr/bin/python3', ['-m', 'uvicorn', '--version'])}; ${version('puma', ['--version'])}; ${version('go', ['version'])}; Node ${process.version}`,
    '',
    `| server | settings | ${DEPLOYS} prefork deploys | the server's own restart, ${DEPLOYS} times |`,
    '| --- | --- | --- | --- |',
  ];
  const only = process.env.ONLY; // e.g. ONLY=Puma: the rows of one server
  try {
    for (const row of ROWS.filter((r) => only === undefined || r.server.includes(only))) {
      const prefork = cell(await measure(() => underPrefork(row)));
      const own: string[] = [];
      for (const restart of row.own) {
        const m = await measure(async () => {
          const server = await startOwn(restart);
          try {
            return await underLoad(server.url, () => server.restart());
          } finally {
            await server.stop();
          }
        });
        own.push(`${restart.how}: ${cell(m)}`);
      }
      const line = `| ${row.server} | ${row.settings} | ${prefork} | ${own.join('<br>') || 'none of its own'} |`;
      process.stderr.write(`${line}\n`);
      lines.push(line);
    }
  } finally {
    removeGoBuild();
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`prefork bench:exec-servers: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
