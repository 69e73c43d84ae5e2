import { describe, expect, it } from 'vitest';
import { resolveSteps } from '../../src/canary/steps.js';
import {
  earlyVerdict,
  judgeStep,
  type SideWindow,
  shareLowerBound,
} from '../../src/canary/verdict.js';
import { emptyFigures, recordResponse } from '../../src/figures/figures.js';

// How a canary deploy plans its steps and judges each window: pure functions, no process.

const limits = { maxErrorRate: 1, maxP99Ratio: 1.5, minRequests: 100 };

/** A side that answered `ok` 200s and `failed` 500s, all in `ms` milliseconds. */
function side(release: string, ok: number, failed = 0, ms = 10, crashes = 0): SideWindow {
  const figures = emptyFigures();
  for (let i = 0; i < ok; i += 1) recordResponse(figures, 200, ms / 1000);
  for (let i = 0; i < failed; i += 1) recordResponse(figures, 500, ms / 1000);
  return { release, workers: 1, figures, crashes };
}

describe('canary steps', () => {
  it('resolve counts and shares of the full count, dropping steps that do not grow', () => {
    expect(resolveSteps('1,50%', 4)).toEqual([1, 2]);
    expect(resolveSteps('1,50%', 8)).toEqual([1, 4]);
    expect(resolveSteps('1, 25% ,75%', 8)).toEqual([1, 2, 6]);
    // Two workers: 50% is 1, no larger than the step before.
    expect(resolveSteps('1,50%', 2)).toEqual([1]);
    expect(resolveSteps('10,100%', 4)).toEqual([4]);
    expect(resolveSteps('33%', 3)).toEqual([1]);
  });
});

describe('a canary step’s verdict', () => {
  it('passes a release as good as the old one', () => {
    const verdict = judgeStep(side('v2', 500, 2), side('v1', 2000, 6), limits);
    expect(verdict.verdict).toBe('pass');
    expect(verdict.new).toMatchObject({ requests: 502, errorRate: 0.4, crashes: 0 });
    expect(verdict.new.p99Ms).toBeGreaterThan(7.5);
    expect(verdict.new.p99Ms).toBeLessThanOrEqual(10);
  });

  it('fails more 5xx than the limit allows, and a p99 more than the ratio above the floor', () => {
    const errors = judgeStep(side('v2', 475, 25), side('v1', 2000, 0), limits);
    expect(errors.verdict).toBe('fail');
    expect(errors.reasons).toEqual([
      '5xx 5% vs 0%: +5 points, more than --canary-max-error-rate 1',
    ]);
    const slow = judgeStep(side('v2', 500, 0, 30), side('v1', 2000, 0, 10), limits);
    expect(slow.verdict).toBe('fail');
    expect(slow.reasons[0]).toMatch(
      /^p99 29.95 ms vs 9.98 ms: 3×, more than --canary-max-p99-ratio 1.5$/,
    );
    // Under the 5 ms floor a ratio says nothing: 3 ms against 1 ms passes.
    expect(judgeStep(side('v2', 500, 0, 3), side('v1', 2000, 0, 1), limits).verdict).toBe('pass');
  });

  it('calls too few requests "no data", and a crash a failure whatever the figures', () => {
    const few = judgeStep(side('v2', 40), side('v1', 2000), limits);
    expect(few.verdict).toBe('no-data');
    expect(few.reasons).toEqual(['v2 answered 40 requests, fewer than --canary-min-requests 100']);
    expect(judgeStep(side('v2', 40, 0, 10, 1), side('v1', 2000), limits).verdict).toBe('fail');
    // An exec release: nothing counted, judged on crashes (and health checks, elsewhere).
    const exec = { release: 'x2', workers: 1, figures: undefined, crashes: 0 };
    const judged = judgeStep(exec, { ...exec, release: 'x1' }, limits);
    expect(judged).toMatchObject({ verdict: 'pass', judgedOn: 'crashes-and-health' });
  });

  it('stops early only when the new release is worse beyond doubt', () => {
    // 5% of 200 answers: the 99% lower bound of the share is above 1 point.
    expect(shareLowerBound(10, 200)).toBeGreaterThan(0.01);
    expect(earlyVerdict(side('v2', 190, 10), side('v1', 1000), limits)?.verdict).toBe('fail');
    // 3 of 150 (2%) may be bad luck of a 1% release: keep watching.
    expect(earlyVerdict(side('v2', 147, 3), side('v1', 1000), limits)).toBeUndefined();
    // A slow p99 waits for the end of the window; a crash does not.
    expect(earlyVerdict(side('v2', 500, 0, 30), side('v1', 1000), limits)).toBeUndefined();
    expect(earlyVerdict(side('v2', 5, 0, 10, 1), side('v1', 5), limits)?.verdict).toBe('fail');
  });
});
