/**
 * How long prefork gives processes to stop, in one place, so that what the orchestrator and
 * the CLI wait for stays longer than what the master itself allows (each is named for what it
 * bounds; docs/deploy.md lists them for operators).
 */

/** Past the graceful timeout, how long a draining worker has before its master SIGKILLs it. */
export const WORKER_KILL_GRACE_MS = 5000;
/** On a quick shutdown (TERM/INT), how long workers have to exit before SIGKILL. */
export const QUICK_KILL_MS = 5000;
/**
 * Past the graceful timeout, how long a master told QUIT has to exit: its workers' own
 * {@link WORKER_KILL_GRACE_MS}, then time to reap them and clean up.
 */
export const MASTER_QUIT_MARGIN_MS = WORKER_KILL_GRACE_MS + 5000;
/** How long a master told TERM has to exit: its workers' {@link QUICK_KILL_MS}, then clean-up. */
export const MASTER_TERM_MS = QUICK_KILL_MS + 5000;
/** How long a SIGKILLed process has to be gone (reaped by its parent) before we give up. */
export const KILL_REAP_MS = 5000;
