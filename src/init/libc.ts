import { createRequire } from 'node:module';

/**
 * The two system calls an init needs and Node does not offer: `prctl(PR_SET_CHILD_SUBREAPER)`
 * (so that a master whose old master exits becomes this process's child, not the host init's)
 * and `waitpid()` on a pid libuv did not spawn (an adopted master, an orphan of a release),
 * called through koffi's FFI (prebuilt for each platform, N-API: one binary for every Node).
 * Loaded only by the init process (docs/containers.md), never by a master or a worker.
 */
export interface Libc {
  /** Makes this process a child subreaper (a no-op for a PID 1, which is one already). */
  becomeSubreaper(): void;
  /**
   * Reaps `pid` if it has exited: its exit code, or 128 + the signal that ended it; undefined
   * while it runs.
   */
  reap(pid: number): number | undefined;
}

const PR_SET_CHILD_SUBREAPER = 36;
const WNOHANG = 1;
/** glibc's, then musl's (Alpine) name for the C library. */
const LIBC_NAMES = ['libc.so.6', 'libc.musl-x86_64.so.1', 'libc.musl-aarch64.so.1'];

/** Binds the C library's `prctl` and `waitpid`; throws, naming what failed, where it cannot. */
export function loadLibc(): Libc {
  const require = createRequire(import.meta.url);
  const koffi = require('koffi') as typeof import('koffi');
  let lib: ReturnType<typeof koffi.load> | undefined;
  const errors: string[] = [];
  for (const name of LIBC_NAMES) {
    try {
      lib = koffi.load(name);
      break;
    } catch (error) {
      errors.push(`${name}: ${(error as Error).message}`);
    }
  }
  if (lib === undefined) throw new Error(`cannot load the C library (${errors.join('; ')})`);
  const prctl = lib.func(
    'int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)',
  );
  const waitpid = lib.func('int waitpid(int pid, _Out_ int *status, int options)');
  return {
    becomeSubreaper() {
      if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) !== 0) {
        throw new Error('prctl(PR_SET_CHILD_SUBREAPER) failed');
      }
    },
    reap(pid) {
      const status = [0];
      const reaped = waitpid(pid, status, WNOHANG) as number;
      if (reaped !== pid) return undefined;
      return exitCodeOf(status[0] ?? 0);
    },
  };
}

/** A wait status as a shell shows it: the exit code, or 128 + the terminating signal. */
export function exitCodeOf(status: number): number {
  const signal = status & 0x7f;
  return signal === 0 ? (status >> 8) & 0xff : 128 + signal;
}
