import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** A process as `/proc/<pid>/stat` shows it. */
export interface ProcessEntry {
  pid: number;
  /** The kernel's short name: a prefork process's title, cut to 15 characters. */
  comm: string;
  /** `R`, `S`, `T`, `Z` (exited, not yet reaped), ... */
  state: string;
  /** Its parent's pid (a process adopted by a subreaper: the subreaper's). */
  ppid: number;
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
    const match = /^\d+ \((.*)\) (\S) (\d+)/s.exec(text);
    return match
      ? { pid, comm: match[1] ?? '', state: match[2] ?? '', ppid: Number(match[3]) }
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Every process, by parent pid, from each process's own `/proc/<pid>/stat`. Not from each of
 * this process's threads' `/proc/self/task/<tid>/children`, read one after another: an old
 * master that exits between two reads can move its child, the new master, to a thread already
 * read (the main thread, read first), so that no read names it. The likeliest cause of an init
 * that saw no master and exited under a serving one (once, in a clean-clone CI pass on Node
 * 26, 2026-12-07); proc_tid_children(5) warns that the file misses children as others exit.
 */
function processesByParent(): Map<number, ProcessEntry[]> {
  const byParent = new Map<number, ProcessEntry[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const entry = readEntry(Number(name));
    if (entry === undefined) continue; // gone while we looked
    const siblings = byParent.get(entry.ppid);
    if (siblings === undefined) byParent.set(entry.ppid, [entry]);
    else siblings.push(entry);
  }
  return byParent;
}

/** This process's pid as `/proc` numbers it (the same as `process.pid` when `/proc` is its namespace's). */
function ownPid(): number {
  return Number(readlinkSync('/proc/self'));
}

/** This process's children, zombies included. */
export function ownChildren(): ProcessEntry[] {
  return processesByParent().get(ownPid()) ?? [];
}

/**
 * Every live (not zombie) descendant of this process, breadth first. A zombie's children are
 * walked too: one read before its parent exited still names that parent, and is ours (a
 * subreaper's) a moment later.
 */
export function liveDescendants(): ProcessEntry[] {
  const byParent = processesByParent();
  const out: ProcessEntry[] = [];
  const queue = [...(byParent.get(ownPid()) ?? [])];
  const seen = new Set<number>();
  for (let entry = queue.shift(); entry !== undefined; entry = queue.shift()) {
    if (seen.has(entry.pid)) continue;
    seen.add(entry.pid);
    if (entry.state !== 'Z') out.push(entry);
    queue.push(...(byParent.get(entry.pid) ?? []));
  }
  return out;
}
