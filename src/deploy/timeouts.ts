/**
 * How long each wait of `deploy`, `rollback` and the undo path may take when no option sets
 * it (`--ready-timeout`, `--verify-window` and `--graceful-timeout` do for theirs). Every
 * wait has one, and every timeout an action: docs/deploy.md lists them.
 */

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
