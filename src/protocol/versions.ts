/**
 * The versions of every format prefork writes for another prefork to read, and the oldest each
 * reader still reads: one place, so that docs/upgrade.md's promise ("from every prefork release
 * so far") has one source. Raise a version when a change would be misread by a reader of the
 * previous one; lower an oldest only with a release note.
 *
 * - The handover: what a master hands the new master it spawns (environment, inherited sockets,
 *   ready message).
 * - The control socket: the requests and replies on `.prefork/master-<pid>.sock`.
 * - The deploy journal: `.prefork/deploy.json` and `history.json`, read by the next deploy,
 *   rollback, status or prune of the same root (perhaps by a newer prefork).
 */

/**
 * 1: every prefork before the handover carried a version. 2: adds `PREFORK_PROTOCOL`, the
 * `metrics:` socket name prefix and the ready message's `protocol` and `version`. 3: the
 * sockets as JSON in `PREFORK_SOCKETS` (a bind may hold any character), the comma-joined pair
 * still set beside it for a new master of protocol 1 or 2.
 */
export const HANDOVER_PROTOCOL = 3;
/** The oldest handover protocol an old master may speak for this prefork to take over from it. */
export const OLDEST_HANDOVER_PROTOCOL = 1;

/**
 * 1: masters before the control socket carried a version (their `status` names the new master
 * `childPid` in the oldest, `newMasterPid` later; some fields absent). 2: every reply carries
 * `protocol`, and every reply is validated by the client.
 */
export const CONTROL_PROTOCOL = 2;
/** The oldest control protocol whose masters today's CLI still reads. */
export const OLDEST_CONTROL_PROTOCOL = 1;

/**
 * 1: the journal and history as every prefork so far wrote them (fields added since are
 * optional, so a newer reader reads an older file and an older reader ignores what it adds).
 */
export const JOURNAL_FORMAT = 1;
/** The oldest journal format this prefork reads. */
export const OLDEST_JOURNAL_FORMAT = 1;
