import { chownSync } from 'node:fs';
import type { Logger } from 'pino';
import { messageOf } from '../errors/index.js';

/** Workers running as `--user` append to the log file too: it is theirs as well. */
export function shareLogFile(
  file: string | undefined,
  identity: { uid: number; gid: number } | undefined,
  logger: Logger,
): void {
  if (identity === undefined || file === undefined) return;
  try {
    chownSync(file, identity.uid, identity.gid);
  } catch (error) {
    logger.error(`cannot hand ${file} to the workers' user: ${messageOf(error)}`);
  }
}
