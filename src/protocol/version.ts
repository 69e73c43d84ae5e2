import { readFileSync } from 'node:fs';

/** This prefork's version, from its package.json (what `--version` and `status` say). */
export const PREFORK_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;
