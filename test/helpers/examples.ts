import { execFile } from 'node:child_process';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO } from './repo.js';

/**
 * Copies `docs/examples/<name>` to `dir` and installs its dependencies there from the npm
 * registry, as a user would (`npm install --omit=dev`). One retry: the registry is the
 * network, and the network has bad seconds.
 */
export async function installExample(name: string, dir: string): Promise<void> {
  cpSync(join(REPO, 'docs/examples', name), dir, { recursive: true });
  const install = () =>
    promisify(execFile)(
      'npm',
      ['install', '--omit=dev', '--no-audit', '--no-fund', '--no-package-lock'],
      { cwd: dir },
    );
  await install().catch(install);
}
