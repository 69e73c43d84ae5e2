import type {
  ControlRequest,
  MasterMetrics,
  MasterStatus,
  WorkerHealth,
} from '../control/schema.js';

/** What a master offers its control socket (`Master` implements it). */
export interface ControlTarget {
  checkHealth(path: string): Promise<WorkerHealth[]>;
  metricsShare(): MasterMetrics;
  status(): MasterStatus;
  /** A canary deploy starts or ends on this master; returns whether it is on now. */
  setCanary(on: boolean): boolean;
  /** USR2 with the new master's first worker count; returns why it was refused, if it was. */
  startUpgrade(workers: number | undefined): string | undefined;
  /** Sets the current generation's worker count (reconciled on the next turn of the loop). */
  scale(workers: number): void;
}

/**
 * Answers one control request (already validated by the control server's schema): the
 * result, or a thrown error the server replies as `{ ok: false, error }`.
 */
export function answerControl(request: ControlRequest, target: ControlTarget): unknown {
  switch (request.cmd) {
    case 'health':
      return target.checkHealth(request.path);
    case 'metrics':
      return target.metricsShare();
    case 'canary':
      return { canary: target.setCanary(request.on) };
    case 'upgrade': {
      const refused = target.startUpgrade(request.workers);
      if (refused !== undefined) throw new Error(`upgrade refused: ${refused}`);
      return { newMasterPid: target.status().newMasterPid ?? undefined };
    }
    case 'scale':
      target.scale(request.workers);
      return { workers: request.workers };
    case 'status':
      return statusOnTheWire(target.status());
  }
}

/**
 * A status as it is sent: the upgrade's two pids also under the names the first preforks' CLI
 * reads (`childPid`, `parentPid`), so such a CLI, still installed beside a newer master, sees
 * no upgrade in flight where none is. Today's CLI reads either (`MasterStatusSchema`).
 */
function statusOnTheWire(status: MasterStatus): MasterStatus & {
  childPid: number | null;
  parentPid: number | null;
} {
  return { ...status, childPid: status.newMasterPid, parentPid: status.oldMasterPid };
}
