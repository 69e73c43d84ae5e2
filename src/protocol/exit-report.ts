/**
 * What a master leaves behind when it exits (`exitReportName`): its drain's account, for the
 * deploy (or whoever stopped it) to tell, since the master itself is gone by then. Versioned:
 * a reader skips a report of a version it does not know.
 */
import * as v from 'valibot';
import { MoveCountsSchema } from './moves.js';

export const EXIT_REPORT_VERSION = 1;

const count = v.pipe(v.number(), v.integer(), v.minValue(0));

export const ExitReportSchema = v.object({
  version: v.literal(EXIT_REPORT_VERSION),
  pid: v.number(),
  /** When it exited (`Date.now()` ms). */
  at: v.number(),
  /**
   * Connections its workers (all it ever ran) closed because the graceful timeout had come:
   * its status's `closedAtDeadline` at its end (less the one read before a deploy or a stop is
   * what that closed).
   */
  closedAtDeadline: count,
  /**
   * What its workers' drains did with their connections (moved, closed, reset, ...): its
   * status's `drained` at its end. Optional: reports of earlier masters lack it.
   */
  drained: v.optional(MoveCountsSchema),
  gracefulTimeoutS: v.number(),
});
export type ExitReport = v.InferOutput<typeof ExitReportSchema>;
