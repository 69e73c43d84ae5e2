import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
  engines: { node: string };
};

/** This prefork's version, from its package.json (what `--version` and `status` say). */
export const PREFORK_VERSION = pkg.version;

/** The Node versions this prefork runs on (its package.json's `engines.node`). */
export const PREFORK_NODE_RANGE = pkg.engines.node;
