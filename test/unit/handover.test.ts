import { describe, expect, it } from 'vitest';
import { Handover } from '../../src/handover/handover.js';

// The handover protocol a new master reads from its old master's environment.

const byOldMaster = (extra: Record<string, string>) =>
  Handover.from({ PREFORK_PARENT_PID: '4242', PREFORK_READY_FD: '9', ...extra });

describe('handover protocol', () => {
  it('takes over from protocol 1 (no PREFORK_PROTOCOL: a prefork from before it), 2 and 3', () => {
    expect(byOldMaster({}).spawnerProtocol()).toBe(1);
    expect(() => byOldMaster({}).assertCompatible()).not.toThrow();
    expect(byOldMaster({ PREFORK_PROTOCOL: '2' }).spawnerProtocol()).toBe(2);
    expect(() => byOldMaster({ PREFORK_PROTOCOL: '2' }).assertCompatible()).not.toThrow();
    expect(() => byOldMaster({ PREFORK_PROTOCOL: '3' }).assertCompatible()).not.toThrow();
  });

  it('refuses an old master of a newer protocol (a downgrade), saying why and what to do', () => {
    expect(() => byOldMaster({ PREFORK_PROTOCOL: '4' }).assertCompatible()).toThrow(
      /cannot take over from old master 4242: it speaks handover protocol 4, prefork .* takes over from protocols 1–3; a downgrade across handover protocols is not supported: stop the old master and start this prefork\. The old master serves on/,
    );
    expect(() => byOldMaster({ PREFORK_PROTOCOL: 'x' }).spawnerProtocol()).toThrow(
      /PREFORK_PROTOCOL="x" is not a number/,
    );
  });

  it('has nothing to check for a master started by hand or by start --daemon', () => {
    expect(Handover.from({}).spawnerProtocol()).toBeUndefined();
    expect(() => Handover.from({}).assertCompatible()).not.toThrow();
    const daemon = Handover.from({ PREFORK_READY_FD: '9', PREFORK_PROTOCOL: '7' });
    expect(() => daemon.assertCompatible()).not.toThrow();
  });
});
