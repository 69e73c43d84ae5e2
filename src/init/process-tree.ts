import { readdirSync, readFileSync } from 'node:fs';

/** A process as `/proc/<pid>/stat` shows it. */
export interface ProcessEntry {
  pid: number;
  /** The kernel's short name: a prefork process's title, cut to 15 characters. */
  comm: string;
  /** `R`, `S`, `T`, `Z` (exited, not yet reaped), ... */
  state: string;
}

/** The short name every prefork master's title starts with (`prefork: master [v1]`). */
const MASTER_COMM = 'prefork: master';

/** True when `entry` is a prefork master (its title set), not a worker or anything else. */
export function isMasterEntry(entry: ProcessEntry): boolean {
  return entry.comm.startsWith(MASTER_COMM);
}

/** `pid`'s stat entry, or undefined when there is no such process. */
export function readEntry(pid: number): ProcessEntry | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const match = /^\d+ \((.*)\) (\S)/s.exec(text);
    return match ? { pid, comm: match[1] ?? '', state: match[2] ?? '' } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The children of `pid`, from `/proc/<pid>/task/<tid>/children` (Linux 3.5+, on every kernel
 * Docker and Kubernetes run on); an adopted orphan may hang off any thread of an init.
 */
export function childrenOf(pid: number | 'self'): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    try {
      for (const token of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ')) {
        if (/^\d+$/.test(token.trim())) out.push(Number(token));
      }
    } catch {
      // the thread ended while we read
    }
  }
  return out;
}

/** Every live (not zombie) descendant of this process, breadth first. */
export function liveDescendants(): ProcessEntry[] {
  const out: ProcessEntry[] = [];
  const queue = childrenOf('self');
  const seen = new Set<number>();
  for (let pid = queue.shift(); pid !== undefined; pid = queue.shift()) {
    if (seen.has(pid)) continue;
    seen.add(pid);
    const entry = readEntry(pid);
    if (entry === undefined || entry.state === 'Z') continue;
    out.push(entry);
    queue.push(...childrenOf(pid));
  }
  return out;
}
