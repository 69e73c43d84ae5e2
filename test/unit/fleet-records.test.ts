import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeHost, readRunRecords, rolloutVerdict } from '../../src/fleet/records.js';

let state: string;

beforeEach(() => {
  state = mkdtempSync(join(tmpdir(), 'prefork-fleet-records-'));
});

afterEach(() => {
  rmSync(state, { recursive: true, force: true });
});

/** Writes what the playbook writes for a run of release v3 (docs/fleet/roles/...). */
function run(
  files: {
    hosts?: string[];
    deploys?: object[];
    rollbacks?: object[];
    halted?: string;
    moved?: string[];
  } = {},
) {
  const dir = join(state, 'v3');
  mkdirSync(join(dir, 'outcome'), { recursive: true });
  mkdirSync(join(dir, 'moved'), { recursive: true });
  writeFileSync(
    join(dir, 'outcome', 'hosts.list'),
    `${(files.hosts ?? ['a', 'b', 'c']).join('\n')}\n`,
  );
  for (const d of files.deploys ?? []) {
    writeFileSync(join(dir, 'outcome', `${(d as { host: string }).host}.json`), JSON.stringify(d));
  }
  for (const r of files.rollbacks ?? []) {
    writeFileSync(
      join(dir, 'outcome', `${(r as { host: string }).host}.rollback.json`),
      JSON.stringify(r),
    );
  }
  if (files.halted) writeFileSync(join(dir, 'halted'), `${files.halted}\n`);
  for (const m of files.moved ?? []) writeFileSync(join(dir, 'moved', m), 'v2\n');
  return readRunRecords(state, 'v3');
}

const deployed = (host: string) => ({
  host,
  release: 'v3',
  outcome: 'deployed',
  previous: 'v2',
  seconds: '2.5',
});
const failed = (host: string, rc: number) => ({
  host,
  release: 'v3',
  outcome: 'failed',
  task: 'Deploy the release (prefork deploy)',
  rc,
  error: 'v3 failed at verify: health check failed',
});

describe('the outcome of a rollout, from what the playbook recorded', () => {
  it('passes when every host moved or was already there', () => {
    const records = run({
      deploys: [deployed('a'), { host: 'b', release: 'v3', outcome: 'already' }, deployed('c')],
    });
    expect(rolloutVerdict(records, 'v3', 0)).toBeUndefined();
    expect(describeHost(records, 'a')).toBe('a: deployed v3 in 2.5 s (was v2)');
    expect(describeHost(records, 'b')).toBe('b: already on v3, left alone');
  });

  it('is exit 1 when it halted and every moved host is back', () => {
    const records = run({
      deploys: [deployed('a'), failed('b', 1)],
      rollbacks: [
        { host: 'a', outcome: 'rolled-back', serving: 'v2' },
        { host: 'b', outcome: 'back', serving: 'v2' },
      ],
      halted: 'b',
    });
    const error = rolloutVerdict(records, 'v3', 2);
    expect(error?.exitCode).toBe(1);
    expect(error?.message).toMatch(
      /halted on b: v3 failed at verify.*Rolled back a; every host serves/,
    );
    expect(describeHost(records, 'c')).toBe('c: untouched');
  });

  it('is exit 3 when a rollback failed, a deploy could not roll itself back, or a moved host is unaccounted for', () => {
    const rollbackFailed = run({
      deploys: [deployed('a'), failed('b', 1)],
      rollbacks: [
        { host: 'a', outcome: 'rollback-failed', error: 'the rollback did not complete' },
      ],
      halted: 'b',
    });
    expect(rolloutVerdict(rollbackFailed, 'v3', 2)?.exitCode).toBe(3);
    expect(rolloutVerdict(rollbackFailed, 'v3', 2)?.message).toMatch(/a may still run v3/);
    rmSync(join(state, 'v3'), { recursive: true });
    const selfIncomplete = run({ deploys: [failed('a', 3)], halted: 'a' });
    expect(rolloutVerdict(selfIncomplete, 'v3', 2)?.exitCode).toBe(3);
    rmSync(join(state, 'v3'), { recursive: true });
    const unaccounted = run({
      deploys: [deployed('a'), failed('b', 1)],
      halted: 'b',
      moved: ['a'],
    });
    expect(rolloutVerdict(unaccounted, 'v3', 2)?.exitCode).toBe(3);
  });

  it('is exit 2 when the playbook failed before it reached a host', () => {
    const records = run({});
    expect(rolloutVerdict(records, 'v3', 4)?.exitCode).toBe(2);
  });
});
