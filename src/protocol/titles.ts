/** Process titles (as the seed's `top` view shows them). */

/** `prefork: master [v1]`, or `prefork: master (old) [v1]` while its new master runs. */
export function masterTitle(release: string, { old }: { old: boolean }): string {
  return `prefork: master${old ? ' (old)' : ''} [${release}]`;
}

/** `prefork: worker [v1]`. */
export function workerTitle(release: string): string {
  return `prefork: worker [${release}]`;
}

/** The release a master's title names (`prefork: master (old) [v1]` → `v1`), if it is one. */
export function releaseOfMasterTitle(title: string): string | undefined {
  return /^prefork: master(?: \(old\))? \[(.+)\]$/.exec(title)?.[1];
}
