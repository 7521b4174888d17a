// vSphere faults as OneswapErrors. The fault type stays available so callers can react to specific
// faults (NotAuthenticated → re-login, InvalidPowerState → already in that state).

import { OneswapError, type ErrorKind } from '../errors/index.js';
import type { FaultInfo } from './soap-envelope.js';

const KIND_BY_FAULT: Record<string, ErrorKind> = {
  InvalidLogin: 'auth',
  NotAuthenticated: 'auth',
  NoPermission: 'auth',
  ManagedObjectNotFound: 'not-found',
  NotFound: 'not-found',
  FileNotFound: 'not-found',
  InvalidPowerState: 'conflict',
  InvalidState: 'conflict',
  TaskInProgress: 'conflict',
  FileLocked: 'conflict',
  ConcurrentAccess: 'conflict',
  ToolsUnavailable: 'conflict',
  SnapshotDisabled: 'conflict',
  TooManySnapshotLevels: 'capacity',
  NoDiskSpace: 'capacity',
  InsufficientResourcesFault: 'capacity',
  RequestCanceled: 'interrupted',
};

const HINT_BY_FAULT: Record<string, string> = {
  NoPermission: 'grant the vCenter user the privilege named in the fault',
  ManagedObjectNotFound: 'the object was removed or renamed; list the inventory again',
  InvalidPowerState: 'check the VM power state',
  TaskInProgress: 'another task runs on this object; wait for it to finish',
  ToolsUnavailable: 'VMware Tools are not running in the guest; power the VM off instead',
  FileLocked: 'another process holds the file; retry later',
};

const DEFAULT_HINT = 'the object\'s events and tasks in vCenter tell more';

export class VimFaultError extends OneswapError {
  /** vim25 fault type, e.g. "ManagedObjectNotFound". */
  readonly faultType: string;
  readonly faultMessage: string;

  constructor(message: string, fault: FaultInfo, kind?: ErrorKind) {
    super(kind ?? KIND_BY_FAULT[fault.type] ?? 'remote', message, { hint: HINT_BY_FAULT[fault.type] ?? DEFAULT_HINT });
    this.name = 'VimFaultError';
    this.faultType = fault.type;
    this.faultMessage = fault.message;
  }
}

/** `<FaultType>: <server message>` on one line, the server message only when it adds something. */
export function describeFault(fault: FaultInfo): string {
  const msg = fault.message.replace(/\s+/g, ' ').trim();
  return msg === '' || msg === fault.type ? fault.type : `${fault.type}: ${msg}`;
}

export function isFault(err: unknown, type: string): err is VimFaultError {
  return err instanceof VimFaultError && err.faultType === type;
}
