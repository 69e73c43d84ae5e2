import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { REPO } from '../../helpers/repo.js';
import { freePort, must, type Rig, run, waitForHttp } from './rig.js';

const APP = join(REPO, 'releases/v1/app.js');

/** The app as a PM2 user writes it: listen, then tell PM2 it is ready (`wait_ready`). */
const SERVER = `
const http = require('node:http');
http.createServer(require(process.env.APP)).listen(Number(process.env.PORT), '127.0.0.1', () => {
  if (process.send) process.send('ready');
});
`;

/** The PM2 command line of the dev dependency. */
function pm2Bin(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('pm2/package.json')), 'bin/pm2');
}

/** PM2's version, from the dev dependency. */
export function pm2Version(): string {
  const require = createRequire(import.meta.url);
  return (require('pm2/package.json') as { version: string }).version;
}

/**
 * PM2 in cluster mode (its daemon is the cluster primary: round-robin) with `wait_ready`,
 * in a temporary PM2_HOME so that nothing of a user's own PM2 is touched; `pm2 kill` at the end.
 */
export class Pm2Rig implements Rig {
  readonly name = `PM2 ${pm2Version()}`;
  private readonly home = mkdtempSync(join(os.tmpdir(), 'prefork-bench-pm2-'));
  private port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  private pm2(args: string[]): Promise<string> {
    return must(process.execPath, [pm2Bin(), ...args], { ...process.env, PM2_HOME: this.home });
  }

  async start(workers: number): Promise<void> {
    this.port = await freePort();
    mkdirSync(this.home, { recursive: true });
    // PM2 looks up its latest version on the network the first time a PM2_HOME is used,
    // unless this file exists.
    writeFileSync(join(this.home, 'touch'), String(Date.now()));
    const server = join(this.home, 'server.cjs');
    writeFileSync(server, SERVER);
    const ecosystem = join(this.home, 'ecosystem.config.cjs');
    const app = {
      name: 'bench',
      script: server,
      exec_mode: 'cluster',
      instances: workers,
      wait_ready: true,
      listen_timeout: 10_000,
      env: { APP, PORT: String(this.port) },
    };
    writeFileSync(ecosystem, `module.exports = ${JSON.stringify({ apps: [app] }, null, 2)};\n`);
    await this.pm2(['start', ecosystem]);
    await waitForHttp(this.url);
  }

  supervisorPid(): number {
    return Number(readFileSync(join(this.home, 'pm2.pid'), 'utf8'));
  }

  /** `pm2 reload bench`, twice. */
  async replace(): Promise<[number, number][]> {
    return [await this.replaceOnce(), await this.replaceOnce()];
  }

  /** `pm2 reload bench`. */
  async replaceOnce(): Promise<[number, number]> {
    const from = performance.now();
    await this.pm2(['reload', 'bench']);
    return [from, performance.now()];
  }

  async stop(): Promise<void> {
    await run(process.execPath, [pm2Bin(), 'kill'], { ...process.env, PM2_HOME: this.home });
    rmSync(this.home, { recursive: true, force: true });
  }
}
