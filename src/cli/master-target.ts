import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { findMaster } from '../control/client.js';
import type { MasterStatus } from '../control/schema.js';
import { configSources } from './options.js';

/** The app root's configuration and its verified serving master. */
export interface MasterTarget {
  config: Config;
  master: MasterStatus;
}

/**
 * Resolves `--root`/`--pid`/`--config` and finds the serving master, verified through its
 * control socket to be a prefork master of this root before anything signals it.
 */
export async function resolveMaster(options: Record<string, unknown>): Promise<MasterTarget> {
  const config = loadConfig(configSources(options));
  return { config, master: await findMaster(config.root, config.pid) };
}
