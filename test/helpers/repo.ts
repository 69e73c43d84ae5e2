import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository root: the nearest directory above `from` whose package.json is prefork's. Found
 * by walking up, so it holds for the TypeScript sources vitest runs and for the benchmarks and
 * demo compiled to `test/.build/`.
 */
export function repoRoot(from: string): string {
  for (let dir = dirname(fileURLToPath(from)); ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'prefork') {
      return dir;
    }
    if (dirname(dir) === dir) throw new Error(`no prefork package.json above ${from}`);
  }
}

/** The repository root (where bin/prefork and the bundled releases live). */
export const REPO = repoRoot(import.meta.url);

/** A self-signed certificate for localhost/127.0.0.1, valid until 2126: for the tests only. */
export const TLS_DIR = join(REPO, 'test/fixtures/tls');

/** `key: ..., cert: ...` reading the tests' key and certificate: for a release's source. */
export const TLS_FILES_SOURCE = `key: require('node:fs').readFileSync(${JSON.stringify(join(TLS_DIR, 'key.pem'))}), cert: require('node:fs').readFileSync(${JSON.stringify(join(TLS_DIR, 'cert.pem'))})`;
