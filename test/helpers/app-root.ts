import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** The repository root (where bin/prefork and the bundled releases live). */
export { REPO } from './repo.js';

import { REPO } from './repo.js';
/** The prefork executable, exactly as a user runs it. */
export const PREFORK_BIN = join(REPO, 'bin/prefork');

/** A throwaway app root with the bundled releases v1 and v2 copied in. */
export interface AppRoot {
  dir: string;
  /** Adds `releases/<name>` with these files (package.json is written as JSON). */
  addRelease(name: string, files: Record<string, string | object>): string;
  path(...parts: string[]): string;
  remove(): void;
}

/** Creates an app root in a fresh temporary directory. */
export function makeAppRoot(): AppRoot {
  const dir = mkdtempSync(join(tmpdir(), 'prefork-test-'));
  cpSync(join(REPO, 'releases'), join(dir, 'releases'), { recursive: true });
  return {
    dir,
    addRelease(name, files) {
      const releaseDir = join(dir, 'releases', name);
      for (const [file, content] of Object.entries(files)) {
        const path = join(releaseDir, file);
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
      }
      return releaseDir;
    },
    path: (...parts) => join(dir, ...parts),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A CommonJS release answering `{ release, pid }`, with extra code run at load. */
export function listenerRelease(
  name: string,
  atLoad = '',
  handler = '',
): Record<string, string | object> {
  return {
    'package.json': { name: `test-${name}`, version: '0.0.1', main: 'index.js' },
    'index.js': `${atLoad}
module.exports = (req, res) => {
  ${handler}
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ release: ${JSON.stringify(name)}, pid: process.pid }));
};
`,
  };
}

/** Points `current` at `releases/<name>` the way an operator would (`ln -sfn`, atomically). */
export function switchCurrent(root: AppRoot, name: string): void {
  const temp = root.path(`.current-${name}-${process.pid}`);
  symlinkSync(`releases/${name}`, temp);
  renameSync(temp, root.path('current'));
}
