import { readFileSync } from 'node:fs';

/**
 * True when a process with `pid` runs. A zombie (exited, not yet reaped by its parent — init
 * for an old master whose own parent is gone) counts as exited.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/** Sends `signal` to `pid`; false when it is gone already. */
export function sendSignal(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * The state letter of `pid` in `/proc/<pid>/stat` (`R` running, `S` sleeping, `T` stopped,
 * `Z` zombie, ...), or undefined when there is no such process.
 */
export function processState(pid: number): string | undefined {
  try {
    return /^\d+ \(.*\) (\S)/s.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

/** The command line of `pid` as `ps` shows it: a prefork process's title. Empty if unknown. */
export function processTitle(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

/** Resident memory of `pid` in bytes, from `/proc/<pid>/statm`; 0 when it is gone. */
export function processRss(pid: number): number {
  try {
    const pages = Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]);
    return Number.isFinite(pages) ? pages * PAGE_SIZE : 0;
  } catch {
    return 0;
  }
}

/** Linux page size on the machines prefork runs on (x86-64, arm64 with 4 KiB pages). */
const PAGE_SIZE = 4096;
