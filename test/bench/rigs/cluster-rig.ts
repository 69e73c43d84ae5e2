import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { REPO } from '../../helpers/repo.js';
import { freePort, type Rig, waitForHttp } from './rig.js';

const APP = join(REPO, 'releases/v1/app.js');

/**
 * The primary: round-robin scheduling (Node's default on Linux: the primary accepts and hands
 * each connection to a worker). A restart forks a new worker per old one and disconnects the
 * old one once the new one listens: the graceful restart the cluster module offers.
 */
const PRIMARY = `
const cluster = require('node:cluster');
const http = require('node:http');
const [app, port, workers] = process.argv.slice(2);
if (cluster.isPrimary) {
  let listening = 0;
  for (let i = 0; i < Number(workers); i++) {
    cluster.fork().once('listening', () => { if (++listening === Number(workers)) process.send('ready'); });
  }
  process.on('message', async () => {
    for (const old of Object.values(cluster.workers)) {
      await new Promise((resolve) => cluster.fork().once('listening', resolve));
      old.disconnect();
    }
    process.send('restarted');
  });
} else {
  http.createServer(require(app)).listen(Number(port), '127.0.0.1');
}
`;

/** Node's cluster module serving the bundled release v1, with no drain code of its own. */
export class ClusterRig implements Rig {
  readonly name = 'Node cluster';
  private readonly dir = mkdtempSync(join(os.tmpdir(), 'prefork-bench-cluster-'));
  private primary: ChildProcess | undefined;
  private port = 0;

  get url(): string {
    return `http://127.0.0.1:${this.port}/`;
  }

  async start(workers: number): Promise<void> {
    this.port = await freePort();
    // cluster forks its workers from a script file, so the program goes to one.
    const script = join(this.dir, 'cluster.cjs');
    writeFileSync(script, PRIMARY);
    this.primary = spawn(process.execPath, [script, APP, String(this.port), String(workers)], {
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      detached: true,
    });
    await new Promise((resolve) => this.primary?.once('message', resolve));
    await waitForHttp(this.url);
  }

  supervisorPid(): number {
    return this.primary?.pid ?? 0;
  }

  /** Two graceful restarts of every worker. */
  async replace(): Promise<[number, number][]> {
    return [await this.replaceOnce(), await this.replaceOnce()];
  }

  /** One graceful restart of every worker. */
  async replaceOnce(): Promise<[number, number]> {
    const from = performance.now();
    this.primary?.send('restart');
    await new Promise((resolve) => this.primary?.once('message', resolve));
    return [from, performance.now()];
  }

  async stop(): Promise<void> {
    const primary = this.primary;
    if (primary?.pid !== undefined && primary.exitCode === null) {
      const exited = new Promise((resolve) => primary.once('exit', resolve));
      // The primary and its workers share a process group (the primary leads its session).
      process.kill(-primary.pid, 'SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
