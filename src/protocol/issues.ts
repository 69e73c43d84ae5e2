import type * as v from 'valibot';

/** The issues of a failed parse as one line: where each is, and what was expected. */
export function describeIssues(issues: readonly v.BaseIssue<unknown>[]): string {
  return issues
    .slice(0, 3)
    .map((issue) => {
      const path = issue.path?.map((p) => String(p.key)).join('.') ?? '';
      return path === '' ? issue.message : `${path}: ${issue.message}`;
    })
    .join('; ');
}
