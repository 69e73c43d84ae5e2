import type { Logger } from 'pino';
import { type ConfigSources, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { messageOf } from '../errors/index.js';
import { readCurrentRelease } from '../release/current-link.js';
import type { Release } from '../release/read-release.js';

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

  /** Starts the next generation on `release`/`config`; the current one is kept to go back to. */
  start(release: Release, config: Config, desired: number): void {
    this.replacing = this.current;
    this.current = { number: this.current.number + 1, release, config, desired };
  }

  /**
   * Goes back to the generation the unfinished reload replaces; returns the abandoned
   * generation's number (its workers are to be drained), undefined when there was no reload.
   */
  abandon(): number | undefined {
    const previous = this.replacing;
    if (previous === undefined) return undefined;
    const abandoned = this.current.number;
    this.replacing = undefined;
    this.current = previous;
    return abandoned;
  }

  /** The reload's workers are all ready: nothing to go back to any more. Was one running? */
  complete(): boolean {
    const was = this.replacing !== undefined;
    this.replacing = undefined;
    return was;
  }
}
