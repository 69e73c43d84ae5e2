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
