import { openSync, realpathSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { loadConfig } from '../../config/load.js';
import { queryMaster } from '../../control/client.js';
import { EXIT, PreforkError, UsageError } from '../../errors/index.js';
import { Handover } from '../../handover/handover.js';
import { type MasterCommand, spawnMaster } from '../../handover/spawn-master.js';
import { checkNode } from '../../process/node-binary.js';
import { INTERNAL_ENV } from '../../protocol/env.js';
import {
  currentPath,
  pointCurrent,
  readCurrentRelease,
  readCurrentTarget,
} from '../../release/current-link.js';
import { readReleaseInRoot } from '../../release/read-release.js';
import { readPidfile } from '../../state/pidfile.js';
import { assertWorkersCanRead, workersUserLabel } from '../../worker-kind/worker-access.js';
import { resolveWorkerIdentity } from '../../worker-kind/worker-identity.js';
import { addMasterOptions, addRootOptions, configSources } from '../options.js';

/**
 * The command line a master re-execs with: the same Node flags, script and arguments, less
 * the `start` release argument (a re-exec'd master starts from `current`) and, for the
 * detached master of `--daemon`, less `--daemon`.
 */
export function masterArgs(
  argv: string[],
  command: Command,
  { release, dropDaemon }: { release: string | undefined; dropDaemon: boolean },
): string[] {
  const valueFlags = new Set(
    command.options.filter((o) => o.required || o.optional).flatMap((o) => [o.long, o.short]),
  );
  const startAt = argv.indexOf('start', 1);
  const out = argv.slice(0, startAt + 1);
  let droppedRelease = release === undefined;
  for (let i = startAt + 1; i < argv.length; i += 1) {
    const token = argv[i] as string;
    if (dropDaemon && (token === '--daemon' || token === '-D')) continue;
    if (token.startsWith('-') && !token.includes('=') && valueFlags.has(token)) {
      out.push(token, argv[i + 1] as string);
      i += 1;
      continue;
    }
    if (!droppedRelease && !token.startsWith('-') && token === release) {
      droppedRelease = true;
      continue;
    }
    out.push(token);
  }
  return out;
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of INTERNAL_ENV) delete env[name];
  return env;
}

/** `start --daemon`: run the master detached and return once it is ready. */
async function daemonize(command: MasterCommand, logFile: string | undefined): Promise<void> {
  const out = logFile === undefined ? 'ignore' : openSync(logFile, 'a', 0o600);
  const spawned = spawnMaster(command, { sockets: [], stdout: out, stderr: out, newSession: true });
  const message = await spawned.ready;
  spawned.process.unref();
  if (message?.ready) {
    process.stdout.write(`prefork: master ${message.pid} is ready\n`);
    return;
  }
  const why =
    message?.error ?? `it exited before it was ready${logFile ? ` (see ${logFile})` : ''}`;
  throw new PreforkError(`the master did not start: ${why}`, EXIT.failed);
}

/** Registers `prefork start [release]`. */
export function registerStart(program: Command): void {
  const command = program
    .command('start')
    .description(
      'run a master in the foreground (--daemon to detach); with [release], point current at it first',
    )
    .argument('[release]', 'release to point current at first (releases/<name>)');
  addRootOptions(command);
  addMasterOptions(command);
  command.action(async (release: string | undefined, options: Record<string, unknown>) => {
    // A master spawned by prefork (USR2's new master, or the detached half of --daemon) takes
    // over from whoever spawned it: it neither refuses because of the pidfile nor detaches.
    const { spawnedByPrefork } = Handover.take();
    // Named a master from the start, before its release is known: the container's init counts
    // masters by title, also one whose old master exits while it boots.
    if (spawnedByPrefork) process.title = 'prefork: master';
    const sources = configSources(options);
    const { root } = sources;
    const config = loadConfig(sources);
    const runningPid = readPidfile(config.pid);
    if (runningPid !== undefined && !spawnedByPrefork) {
      if (await queryMaster(root, runningPid)) {
        throw new UsageError(
          `a master is already running (pid ${runningPid}): use "prefork reload" or "prefork deploy", or stop it first`,
        );
      }
    }
    // The Node the master will run (`node`): it must run, be recent enough, and, when this
    // process is to become the master, be the one running it. A master spawned by prefork runs
    // on it already (whoever spawned it checked it): its own version is that Node's.
    const nodeVersion =
      config.node === undefined || spawnedByPrefork ? process.version : checkNode(config.node);
    if (
      config.node !== undefined &&
      !config.daemon &&
      !spawnedByPrefork &&
      realpathSync(config.node) !== realpathSync(process.execPath)
    ) {
      throw new UsageError(
        `node ${config.node} is not the Node running this command (${process.execPath}): a master started in the foreground runs on the Node that starts it. Use --daemon, or start it with that Node: ${config.node} ${process.argv[1]} start ...`,
      );
    }
    const target =
      release === undefined ? undefined : readReleaseInRoot(root, release, nodeVersion);
    const before = readCurrentTarget(root);
    if (target !== undefined) pointCurrent(root, target.dir);
    // A start that fails leaves `current` as it found it.
    const restoreCurrent = () => {
      if (target === undefined) return;
      if (before === undefined) rmSync(currentPath(root), { force: true });
      else pointCurrent(root, resolve(root, before));
    };
    const current = readCurrentRelease(root, nodeVersion);
    const masterCommand: MasterCommand = {
      execPath: config.node ?? process.execPath,
      args: [
        ...process.execArgv,
        ...masterArgs(process.argv.slice(1), command, { release, dropDaemon: config.daemon }),
      ],
      cwd: process.cwd(),
      env: cleanEnv(),
    };
    try {
      const identity = resolveWorkerIdentity(config.user, config.group);
      assertWorkersCanRead(identity, current, workersUserLabel(config.user, config.group));
      // PID 1 (a container's entrypoint) or --init: stay as the parent of every master
      // generation, which a deploy's USR2 replaces (SPEC §17).
      if (!spawnedByPrefork && (config.init ?? process.pid === 1)) {
        if (config.daemon) {
          throw new UsageError(
            '--daemon and --init contradict: the init stays in the foreground as the main process of its supervisor or container; drop one',
          );
        }
        // Loaded only here: a master never holds the init's code.
        const { startInit } = await import('../../init/start-init.js');
        await startInit({
          command: masterCommand,
          pidfile: config.pid,
          stopMode: config.stopMode,
          logLevel: config.logLevel,
          logFile: config.logFile,
          onBootFailure: restoreCurrent,
        });
        return;
      }
      if (config.daemon && !spawnedByPrefork) {
        await daemonize(masterCommand, config.logFile);
        return;
      }
      // The master's code, loaded only by the process that becomes a master: every other
      // command (status, deploy, ...) starts without it.
      const { startMaster } = await import('../../master/start-master.js');
      await startMaster({
        config,
        configSources: sources,
        release: current,
        identity,
        command: masterCommand,
        onBootFailure: restoreCurrent,
      });
    } catch (error) {
      restoreCurrent();
      throw error;
    }
  });
}
