/**
 * Errors that carry the exit code the CLI should end with and a message that names the cause
 * and the fix. Anything else that reaches the CLI is a bug and is reported as one.
 */

/** Exit codes every command shares (docs/deploy.md, "Exit codes"). */
export const EXIT = {
  ok: 0,
  failedRolledBack: 1,
  usage: 2,
  rollbackIncomplete: 3,
  locked: 4,
} as const;

/** An error meant for the user: its message is printed as is, with no stack. */
export class PreforkError extends Error {
  /** Exit code of the command that fails with it. */
  readonly exitCode: number;

  constructor(message: string, exitCode: number = EXIT.failedRolledBack, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PreforkError';
    this.exitCode = exitCode;
  }
}

/** Bad usage, bad configuration or a bad release: nothing was changed (exit 2). */
export class UsageError extends PreforkError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, EXIT.usage, options);
    this.name = 'UsageError';
  }
}

/** The message of any thrown value, without a stack. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
