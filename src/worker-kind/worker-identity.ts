import { execFileSync } from 'node:child_process';
import { UsageError } from '../errors/index.js';

/** The uid and gid workers run as. */
export interface WorkerIdentity {
  uid: number;
  gid: number;
}

/** Looks a name up through NSS (`getent`, no shell), or takes a number as it is. */
function lookup(database: 'passwd' | 'group', name: string): string[] {
  try {
    return execFileSync('getent', [database, name], { encoding: 'utf8' }).trim().split(':');
  } catch {
    const what = database === 'passwd' ? 'user' : 'group';
    throw new UsageError(`--${what} ${name}: no such ${what} on this machine`);
  }
}

/**
 * Resolves `--user`/`--group` into ids for the workers (the master keeps its own, so it can
 * bind privileged ports and reopen root-owned logs). `--group` defaults to the user's primary
 * group. Only a master running as root can switch identity.
 */
export function resolveWorkerIdentity(
  user: string | undefined,
  group: string | undefined,
): WorkerIdentity | undefined {
  if (user === undefined && group === undefined) return undefined;
  if (process.getuid?.() !== 0) {
    throw new UsageError(
      '--user/--group need the master to run as root (it binds, then workers drop to them)',
    );
  }
  const passwd = user === undefined ? undefined : lookup('passwd', user);
  const uid = passwd ? Number(passwd[2]) : 0;
  const gid = group !== undefined ? Number(lookup('group', group)[2]) : Number(passwd?.[3] ?? 0);
  return { uid, gid };
}
