import { UsageError } from '../errors/index.js';
import type { MasterCommand } from '../handover/spawn-master.js';
import { createLog } from '../log/logger.js';
import { Init, type StopMode } from './init.js';
import { loadLibc } from './libc.js';

/**
 * `prefork start` as the container's main process (PID 1, or `--init`): becomes the init that
 * starts the master and outlives every master generation (docs/containers.md).
 */
export async function startInit(options: {
  command: MasterCommand;
  pidfile: string;
  stopMode: StopMode;
  logLevel: string;
  logFile: string | undefined;
  onBootFailure: () => void;
}): Promise<void> {
  let libc: ReturnType<typeof loadLibc>;
  try {
    libc = loadLibc();
  } catch (error) {
    throw new UsageError(
      `cannot run as the container's init (${(error as Error).message}): start with --no-init to run the master itself as this process (a deploy then replaces it, which ends a container whose PID 1 it is)`,
    );
  }
  const log = await createLog({ level: options.logLevel, file: options.logFile, role: 'init' });
  process.title = 'prefork: init';
  new Init({
    command: options.command,
    pidfile: options.pidfile,
    stopMode: options.stopMode,
    libc,
    logger: log.logger,
    reopenLog: () => log.reopen(),
    onBootFailure: options.onBootFailure,
    exit: (code) => process.exit(code),
  }).run();
}
