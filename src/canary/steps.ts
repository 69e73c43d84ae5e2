/**
 * The new release's worker count at each step of a canary deploy, from `--canary-steps`
 * (already checked against its pattern by the configuration): a count (`2`) is that many
 * workers, a share (`50%`) that share of `full` (the old master's workers when the deploy
 * starts), rounded up. Counts above `full` become `full`; a step no larger than the one before
 * it is dropped (with 2 workers, `1,50%` is one step of 1).
 */
export function resolveSteps(text: string, full: number): number[] {
  const counts: number[] = [];
  for (const item of text.split(',').map((s) => s.trim())) {
    const value = Number.parseInt(item, 10);
    const count = item.endsWith('%') ? Math.ceil((value / 100) * full) : value;
    const step = Math.max(1, Math.min(full, count));
    if (step > (counts.at(-1) ?? 0)) counts.push(step);
  }
  return counts;
}
