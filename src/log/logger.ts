import { writeSync } from 'node:fs';
import pino from 'pino';

/** A pino logger and the destination USR1 reopens. */
export interface Log {
  logger: pino.Logger;
  /** Reopens the log file (after logrotate moved it); a no-op for stdout. */
  reopen(): void;
  /** Writes out anything buffered; call before exiting. */
  flush(): void;
}

/** How a process of prefork logs. */
export interface LogOptions {
  level: string;
  /** Append to this file instead of stdout. */
  file?: string | undefined;
  /** Bound into every line: `master` or `worker`. */
  role: 'master' | 'worker' | 'cli';
  /** Human-readable lines; defaults to stdout being a TTY (and no file). */
  pretty?: boolean;
}

/**
 * Creates the logger of a master, a worker or the CLI: JSON lines (one pino event each) to
 * `--log-file` or stdout, or human-readable ones on a terminal. Writes are synchronous: a
 * master logs rarely and must not lose its last lines when it exits.
 */
export async function createLog(options: LogOptions): Promise<Log> {
  const base = { pid: process.pid, role: options.role };
  const pretty = options.pretty ?? (options.file === undefined && process.stdout.isTTY === true);
  if (pretty) {
    const { default: prettyStream } = await import('pino-pretty');
    const stream = prettyStream({ colorize: true, sync: true, ignore: 'hostname' });
    const logger = pino({ level: options.level, base }, stream);
    return { logger, reopen: () => {}, flush: () => {} };
  }
  const destination = pino.destination({
    dest: options.file ?? 1,
    sync: true,
    mkdir: options.file !== undefined,
  });
  // A log that cannot be written (a full disk, a file made read-only) loses lines, never the
  // process: say so once on stderr, and again only after a reopen.
  let complained = false;
  destination.on('error', (error: NodeJS.ErrnoException) => {
    if (complained) return;
    complained = true;
    tellStderr(
      `prefork: cannot write ${options.file ?? 'stdout'} (${error.code ?? error.message}): log lines are dropped until it can be written again`,
    );
  });
  const logger = pino({ level: options.level, base }, destination);
  return {
    logger,
    reopen: () => {
      complained = false;
      if (options.file !== undefined) destination.reopen();
    },
    flush: () => {
      try {
        destination.flushSync();
      } catch {
        // the log cannot be written: already reported through the 'error' event
      }
    },
  };
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
