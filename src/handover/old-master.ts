import { oldbinPath } from '../protocol/files.js';
import { removePidfileIfOurs } from '../state/pidfile.js';

/**
 * The old master of the upgrade that started this master, seen from the new one: whether it
 * still runs, and the `.oldbin` pidfile it may leave behind if it is killed.
 */
export class OldMaster {
  private goneNoticed = false;

  constructor(readonly pid: number) {}

  /**
   * True while it runs. The new master is its child, and a child is reparented the moment its
   * parent exits (even while the parent is an unreaped zombie), so the parent pid tells.
   */
  alive(): boolean {
    return process.ppid === this.pid;
  }

  /**
   * Once it has exited (QUIT at the end of an upgrade, or killed): removes the `.oldbin`
   * pidfile it left if it died without cleaning up, so one master and one pidfile remain.
   * Returns what to log the first time it is seen gone, undefined otherwise.
   */
  noticeGone(pidfile: string): { level: 'info' | 'warn'; message: string } | undefined {
    if (this.goneNoticed || this.alive()) return undefined;
    this.goneNoticed = true;
    if (removePidfileIfOurs(oldbinPath(pidfile), this.pid)) {
      return {
        level: 'warn',
        message: `old master ${this.pid} died without cleaning up: removed its pidfile ${oldbinPath(pidfile)}`,
      };
    }
    return {
      level: 'info',
      message: `old master ${this.pid} has exited: this master serves alone`,
    };
  }
}
