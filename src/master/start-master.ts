import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseBind } from '../config/bind.js';
import type { ConfigSources } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { ControlServer } from '../control/server.js';
import { messageOf, UsageError } from '../errors/index.js';
import { NotifyDir } from '../exec/notify-dir.js';
import { Handover } from '../handover/handover.js';
import { closeListenSockets, HANDED_BACK, openListenSockets } from '../handover/listen-sockets.js';
import type { MasterCommand } from '../handover/spawn-master.js';
import { createLog } from '../log/logger.js';
import type { MetricsServer } from '../metrics/metrics-server.js';
import { isAlive } from '../process/alive.js';
import { controlSocketName } from '../protocol/files.js';
import type { Release } from '../release/read-release.js';
import { assertSafeFile } from '../state/safe-path.js';
import { ensureStateDir } from '../state/state-dir.js';
import type { WorkerIdentity } from '../worker-kind/worker-identity.js';
import { Master } from './master.js';

/** What `prefork start` hands over once the configuration and release check out. */
export interface StartMasterOptions {
  config: Config;
  configSources: ConfigSources;
  release: Release;
  /** uid/gid for workers (`--user`/`--group`), already checked to read what workers load. */
  identity: WorkerIdentity | undefined;
  command: MasterCommand;
  /** Undoes what `start` changed (its `current` swap) if the master never becomes ready. */
  onBootFailure?: () => void;
}

/** Removes control and notify sockets of masters that died without cleaning up. */
function removeStaleSockets(stateDir: string): void {
  for (const name of readdirSync(stateDir)) {
    const pid = /^(?:master-(\d+)|notify-(\d+)-\d+)\.sock$/.exec(name)?.slice(1).find(Boolean);
    if (pid !== undefined && !isAlive(Number(pid))) {
      rmSync(join(stateDir, name), { force: true });
    }
  }
}

/**
 * Turns this process into a master: take the listen sockets (inherited or bound), open the
 * control socket, and run the master loop. Resolves once the loop runs; the process then lives
 * until a signal ends it. A failure before that is reported on the ready pipe and thrown.
 */
export async function startMaster(options: StartMasterOptions): Promise<void> {
  const { config } = options;
  // A failure here is reported on the ready pipe by the CLI (`cli/main.ts`), once.
  const handover = Handover.take();
  handover.assertCompatible();
  const inherited = handover.inheritedFds();
  const { identity } = options;
  const log = await createLog({ level: config.logLevel, file: config.logFile, role: 'master' });
  const stateDir = ensureStateDir(config.root);
  assertSafeFile(config.pid);
  removeStaleSockets(stateDir);
  // Socket activation without an explicit bind: serve systemd's sockets only.
  const fromSystemd = inherited.some((fd) => fd.systemd);
  const binds = fromSystemd && !config.bindGiven ? [] : config.bind.map(parseBind);
  const metricsBind = config.metricsBind === undefined ? undefined : parseBind(config.metricsBind);
  const opened = await openListenSockets(binds, inherited, metricsBind);
  const sockets = opened.filter((s) => !s.metrics);
  const metricsSocket = opened.find((s) => s.metrics);
  let master: Master | undefined;
  const controlPath = join(stateDir, controlSocketName(process.pid));
  const control = await ControlServer.listen(controlPath, (request) => {
    if (master === undefined) throw new Error('the master is starting');
    return master.control(request);
  }).catch((error: unknown) => {
    closeListenSockets(opened, HANDED_BACK);
    throw new UsageError(
      `cannot open the control socket ${controlPath}: ${messageOf(error)} (a Unix socket path holds at most 107 bytes: use a shorter --root)`,
      { cause: error },
    );
  });
  let metrics: MetricsServer | undefined;
  if (metricsSocket !== undefined) {
    // prom-client is loaded only by a master that serves metrics (docs/benchmarks.md, memory).
    const { MetricsServer } = await import('../metrics/metrics-server.js');
    metrics = new MetricsServer(
      metricsSocket,
      {
        root: config.root,
        own: () => {
          if (master === undefined) throw new Error('the master is starting');
          return master.metricsShare();
        },
        status: () => {
          if (master === undefined) throw new Error('the master is starting');
          return master.status();
        },
        peerPid: () => master?.peerPid(),
        ready: () => master?.life.takesTraffic() ?? false,
      },
      log.logger,
    );
  }
  master = new Master({
    config,
    configSources: options.configSources,
    release: options.release,
    sockets,
    log,
    command: options.command,
    workerEnv: { ...process.env },
    handover,
    interactive: process.stdin.isTTY === true,
    control,
    metrics,
    identity,
    onBootFailure: options.onBootFailure,
    notifyDir: new NotifyDir(stateDir, identity),
  });
  await metrics?.listen().catch((error: unknown) => {
    control.close();
    closeListenSockets(opened, HANDED_BACK);
    throw new UsageError(
      `cannot serve metrics on --metrics-bind ${metricsSocket?.address}: ${messageOf(error)}`,
      { cause: error },
    );
  });
  master.run();
}
