import { writeSync } from 'node:fs';
import pino from 'pino';
import { LogDestination } from './destination.js';

/** A pino logger and the destination USR1 reopens. */
export interface Log {
  logger: pino.Logger;
  /** Reopens the log file (after logrotate moved it); a no-op for stdout. */
  reopen(): void;
}

/** How a process of prefork logs. */
export interface LogOptions {
  level: string;
  /** Append to this file instead of stdout. */
  file?: string | undefined;
  /** Bound into every line: `master` or `worker`. */
  role: 'master' | 'worker' | 'cli' | 'init';
  /** Human-readable lines; defaults to stdout being a TTY (and no file). */
  pretty?: boolean;
}

/**
 * Creates the logger of a master, a worker or the CLI: JSON lines (one pino event each) to
 * `--log-file` or stdout, or human-readable ones on a terminal. Writes are synchronous (a
 * master logs rarely and must not lose its last lines when it exits) and never fatal.
 */
export async function createLog(options: LogOptions): Promise<Log> {
  const base = { pid: process.pid, role: options.role };
  const pretty = options.pretty ?? (options.file === undefined && process.stdout.isTTY === true);
  if (pretty) {
    const { default: prettyStream } = await import('pino-pretty');
    const stream = prettyStream({ colorize: true, sync: true, ignore: 'hostname' });
    const logger = pino({ level: options.level, base }, stream);
    return { logger, reopen: () => {} };
  }
  const destination = new LogDestination(options.file, (error) =>
    tellStderr(
      `prefork: cannot write ${options.file ?? 'stdout'} (${error.code ?? error.message}): log lines are dropped until it can be written again`,
    ),
  );
  const logger = pino({ level: options.level, base }, destination);
  return { logger, reopen: () => destination.reopen() };
}

/**
 * Writes one line to stderr, ignoring a stderr that cannot be written (a daemon's stderr may
 * be the very log file whose disk is full): reporting a problem must not become one.
 */
export function tellStderr(line: string): void {
  try {
    writeSync(2, `${line}\n`);
  } catch {
    // nobody to tell
  }
}
