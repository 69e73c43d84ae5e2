/**
 * Errors that carry the exit code the CLI should end with and a message that names the cause
 * and the fix. Anything else that reaches the CLI is a bug and is reported as one.
 */

/** Exit codes every command shares (docs/deploy.md, "Exit codes"). */
export const EXIT = {
  ok: 0,
  /** A deploy, rollback or upgrade failed and was rolled back: the previous release serves. */
  failedRolledBack: 1,
  /** Bad usage, configuration or release: nothing was changed. */
  usage: 2,
  /** Failed, and the rollback did not complete: a person must look. */
  rollbackIncomplete: 3,
  /** Another deploy or rollback holds the lock. */
  locked: 4,
  /**
   * A command that rolls nothing back failed (`start --daemon` whose master never became
   * ready, `stop` that timed out, a prune that cannot tell a master's release): the message
   * says what state things are in.
   */
  failed: 5,
  /** An unexpected error: a bug in prefork (sysexits' EX_SOFTWARE). Nothing can be promised. */
  internal: 70,
} as const;

/** An error meant for the user: its message is printed as is, with no stack. */
export class PreforkError extends Error {
  /** Exit code of the command that fails with it. */
  readonly exitCode: number;

  constructor(message: string, exitCode: number, options?: ErrorOptions) {
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
