import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import semverValid from 'semver/functions/valid.js';
import * as v from 'valibot';
import { describeIssues } from '../config/load.js';
import { UsageError } from '../errors/index.js';
import { EXEC_WORKER_ENV } from '../protocol/env.js';
import { EXEC_RELEASE_FILE } from '../protocol/files.js';

/** How an exec worker tells prefork it serves (`prefork.json` `ready`). */
export type ExecReady = { kind: 'notify' } | { kind: 'after'; ms: number };

/** What `prefork.json` says about running an exec release (SPEC §12, docs/exec-releases.md). */
export interface ExecSpec {
  /** argv; `[0]` is absolute when `prefork.json` gave a path, else a name looked up on PATH. */
  command: string[];
  ready: ExecReady;
  /** Sent to drain a worker (SIGKILL follows after the graceful timeout). */
  stopSignal: NodeJS.Signals;
  /** A worker silent (no `WATCHDOG=1`) longer than this is killed and replaced; 0 = no watchdog. */
  watchdogSec: number;
  /** Added to the workers' environment. */
  env: Record<string, string>;
}

const SIGNALS = Object.keys(osConstants.signals).filter(
  (name) => !['SIGKILL', 'SIGSTOP'].includes(name),
) as NodeJS.Signals[];

/** The schema of `prefork.json`; unknown keys are errors, as in the configuration. */
const execSchema = v.strictObject({
  command: v.pipe(v.array(v.pipe(v.string(), v.minLength(1))), v.minLength(1)),
  version: v.optional(v.string()),
  ready: v.optional(
    v.union(
      [
        v.literal('notify'),
        v.strictObject({ afterMs: v.pipe(v.number(), v.integer(), v.minValue(0)) }),
      ],
      'expected "notify" or {"afterMs": N}',
    ),
  ),
  stopSignal: v.optional(v.picklist(SIGNALS, 'expected a signal name such as "SIGTERM"')),
  watchdogSec: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(86_400))),
  env: v.optional(v.record(v.pipe(v.string(), v.regex(/^[A-Za-z_][A-Za-z0-9_]*$/)), v.string())),
});

/**
 * Reads `<dir>/prefork.json` of the release `name`, or returns undefined when there is none (a
 * Node release). Every problem is a {@link UsageError} naming the key, the cause and the fix:
 * bad JSON, a bad key, a variable prefork sets itself, a `command` that does not exist or is
 * not executable.
 */
export function readExecSpec(
  dir: string,
  name: string,
): { spec: ExecSpec; version: string | undefined } | undefined {
  const file = join(dir, EXEC_RELEASE_FILE);
  if (!existsSync(file)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`${file} is not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const parsed = v.safeParse(execSchema, value);
  if (!parsed.success) {
    const allowed = Object.keys(execSchema.entries);
    const label = (path: string[]) => `"${path.join('.')}"`;
    throw new UsageError(
      `release ${name}: ${file}: ${describeIssues(value, parsed.issues, allowed, label)}`,
    );
  }
  const { command, version, ready, stopSignal, watchdogSec, env = {} } = parsed.output;
  const reserved = Object.keys(env).filter(
    (key) => (EXEC_WORKER_ENV as readonly string[]).includes(key) || key.startsWith('PREFORK_'),
  );
  if (reserved.length > 0) {
    throw new UsageError(
      `release ${name}: ${file}: "env" sets ${reserved.join(', ')}, which prefork sets for each worker itself: remove ${reserved.length > 1 ? 'them' : 'it'}`,
    );
  }
  const program = resolveProgram(command[0] as string, dir, env.PATH ?? process.env.PATH ?? '');
  checkProgram(program, command[0] as string, name);
  return {
    spec: {
      command: [program, ...command.slice(1)],
      ready:
        ready === undefined || ready === 'notify'
          ? { kind: 'notify' }
          : { kind: 'after', ms: ready.afterMs },
      stopSignal: stopSignal ?? 'SIGTERM',
      watchdogSec: watchdogSec ?? 0,
      env,
    },
    version: version !== undefined && semverValid(version) ? version : undefined,
  };
}

/**
 * The program `command[0]` names: a path with a slash is taken from the release directory (the
 * worker's cwd); a bare name is looked up on `PATH`, as `exec` would. Returns the absolute
 * path, or the bare name when no directory on PATH has it (then {@link checkProgram} says so).
 */
function resolveProgram(program: string, dir: string, path: string): string {
  if (program.includes('/')) return resolve(dir, program);
  for (const entry of path.split(delimiter)) {
    if (entry === '') continue;
    const candidate = resolve(dir, entry, program);
    if (isExecutableFile(candidate)) return candidate;
  }
  return program;
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function checkProgram(program: string, given: string, name: string): void {
  const where = `release ${name}: "command" program "${given}"`;
  if (!program.includes('/')) {
    throw new UsageError(
      `${where} is not on PATH: install it, or give its path (relative to the release, e.g. "./bin/${given}")`,
    );
  }
  if (!existsSync(program)) {
    throw new UsageError(
      `${where} does not exist (${program}): build it into the release, or fix "command" in prefork.json`,
    );
  }
  if (!statSync(program).isFile()) {
    throw new UsageError(`${where} is not a file (${program}): name the executable itself`);
  }
  try {
    accessSync(program, constants.X_OK);
  } catch {
    throw new UsageError(`${where} is not executable (${program}): chmod +x ${program}`);
  }
}
