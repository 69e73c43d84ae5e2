import type { Logger } from 'pino';
import { type ConfigSources, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { messageOf } from '../errors/index.js';
import { readCurrentRelease } from '../release/current-link.js';
import type { Release } from '../release/read-release.js';
import type { WorkerPool } from './worker-pool.js';

/** Settings a HUP cannot change: they take effect on the next USR2 or restart. */
const FIXED_UNTIL_RESTART = ['bind', 'pid', 'logFile', 'metricsBind'] as const;

/**
 * What a HUP reloads: the configuration read again and the release `current` points at, the
 * binds and pidfile kept (warned about when they changed). Undefined, logged, when either
 * cannot be read: the running configuration and release stay.
 */
export function readReload(
  sources: ConfigSources,
  running: Config,
  logger: Logger,
): { config: Config; release: Release } | undefined {
  let config: Config;
  let release: Release;
  try {
    config = loadConfig(sources);
    release = readCurrentRelease(running.root);
  } catch (error) {
    logger.error(
      `reload refused: ${messageOf(error)}; keeping the running configuration and release`,
    );
    return undefined;
  }
  for (const key of FIXED_UNTIL_RESTART) {
    if (JSON.stringify(config[key]) !== JSON.stringify(running[key])) {
      logger.warn(`"${key}" changed: it takes effect on the next USR2 upgrade or restart`);
    }
  }
  return { config: { ...config, bind: running.bind, pid: running.pid }, release };
}

/** One generation of workers: its number, the release and configuration it runs, its count. */
export interface Generation {
  number: number;
  release: Release;
  config: Config;
  /** How many workers it should have (TTIN/TTOU and `scale` change it). */
  desired: number;
}

/**
 * The master's generations (HUP): the current one, and while a reload is unfinished the one it
 * replaces, to go back to if the new workers fail to boot. Workers carry their generation's
 * number; reconcile drains an older generation only once the current one is ready.
 */
export class Generations {
  current: Generation;
  /** The generation a HUP replaces, while the new one is not ready yet. */
  private replacing: Generation | undefined;

  constructor(first: Generation) {
    this.current = first;
  }

  /** A reload is unfinished: the current generation's workers are not all ready yet. */
  get reloading(): boolean {
    return this.replacing !== undefined;
  }

  /**
   * Starts the next generation on `release`/`config` (an unfinished reload is given up first,
   * silently); the current one is kept to go back to.
   */
  start(release: Release, config: Config, desired: number, pool: WorkerPool, logger: Logger): void {
    this.abandon(undefined, pool, logger);
    this.replacing = this.current;
    this.current = { number: this.current.number + 1, release, config, desired };
  }

  /**
   * Gives up an unfinished reload: back to the generation it replaces, the abandoned one's
   * workers drained. `reason` undefined gives it up silently (superseded by another reload, or
   * WINCH); otherwise it is logged as a failed reload.
   */
  abandon(reason: string | undefined, pool: WorkerPool, logger: Logger): void {
    const previous = this.replacing;
    if (previous === undefined) return;
    const abandoned = this.current;
    this.replacing = undefined;
    this.current = previous;
    pool.drainWhere((w) => w.generation === abandoned.number, 'reload abandoned', abandoned.config);
    if (reason !== undefined) {
      const { name } = previous.release;
      logger.error(
        { release: name },
        `reload failed: ${reason}; keeping the workers of release ${name}`,
      );
    }
  }

  /** The reload's workers are all ready: nothing to go back to any more. Was one running? */
  complete(): boolean {
    const was = this.replacing !== undefined;
    this.replacing = undefined;
    return was;
  }
}
