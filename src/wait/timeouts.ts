/**
 * Every bound prefork waits by when no option sets it (`--ready-timeout`, `--verify-window` and
 * `--graceful-timeout` do for theirs), in one place: what the orchestrator and the CLI wait for
 * stays longer than what the master itself allows, and every wait has one, each named for what
 * it bounds, every timeout an action (docs/deploy.md lists them for operators).
 */

// Processes stopping

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

// The steps of deploy, rollback and the undo path

/** After USR2, how long the old master has to report the new master it started. */
export const NEW_MASTER_SPAWN_MS = 10_000;
/** After WINCH, how long the old master has to say its workers are stopping. */
export const WINCH_ACK_MS = 5000;
/** How long a master has to settle its pidfiles (`.oldbin` gone, `prefork.pid` its own). */
export const PIDFILE_SETTLE_MS = 5000;
/** How long the old master has to answer a health check again after an undo. */
export const OLD_MASTER_HEALTHY_MS = 10_000;
/** One health check through the bind. */
export const HEALTH_REQUEST_MS = 5000;
/**
 * Past the workers' heartbeat timeout, how long a master has to answer the control request
 * `health`: the app's own 3 s to answer, the master's 5 s guard for lost IPC, and a margin.
 */
export const WORKER_CHECK_MARGIN_MS = 10_000;
/** How long `node --check` may take on a release's entry module. */
export const SYNTAX_CHECK_MS = 30_000;
/** After TTIN or TTOU, how long a master has to change its worker count. */
export const WORKER_COUNT_ACK_MS = 5000;
