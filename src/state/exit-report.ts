import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as v from 'valibot';
import { EXIT_REPORT_VERSION, type ExitReport, ExitReportSchema } from '../protocol/exit-report.js';
import { exitReportName } from '../protocol/files.js';
import { writeFileAtomic } from './atomic-write.js';
import { stateDirPath } from './state-dir.js';

/** Reports no one took (a master stopped by hand) are removed once this old. */
const STALE_REPORT_MS = 24 * 3600_000;

/**
 * Writes this master's exit report into the app root's state directory, and removes reports
 * older than a day that no one took. Does nothing without a state directory.
 */
export function writeExitReport(root: string, report: Omit<ExitReport, 'version'>): void {
  const dir = stateDirPath(root);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  writeFileAtomic(
    join(dir, exitReportName(report.pid)),
    JSON.stringify({ version: EXIT_REPORT_VERSION, ...report }),
  );
  for (const name of names) {
    if (!/^master-\d+\.exit\.json$/.test(name)) continue;
    const path = join(dir, name);
    try {
      if (report.at - statSync(path).mtimeMs > STALE_REPORT_MS) rmSync(path, { force: true });
    } catch {
      // gone already
    }
  }
}

/**
 * The exit report of the master with `pid`, removed as it is read; undefined when it left none
 * (killed, or of a prefork from before reports) or one this prefork does not read.
 */
export function takeExitReport(root: string, pid: number): ExitReport | undefined {
  const path = join(stateDirPath(root), exitReportName(pid));
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  rmSync(path, { force: true });
  try {
    const parsed = v.safeParse(ExitReportSchema, JSON.parse(raw));
    return parsed.success && parsed.output.pid === pid ? parsed.output : undefined;
  } catch {
    return undefined;
  }
}
