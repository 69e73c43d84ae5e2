import type { Config } from '../config/schema.js';
import type { Release } from '../release/read-release.js';

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
