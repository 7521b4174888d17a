// Changed Block Tracking. QueryChangedDiskAreas answers for a bounded window of the disk (real ESXi
// caps the number of areas per answer), so the client pages on startOffset until the capacity;
// an empty window proves nothing about the rest of the disk.

import { OneswapError } from '../errors/index.js';
import { normalizeExtents } from '../extents/index.js';
import type { PropertyCollector } from './property-collector.js';
import { ref } from './soap-envelope.js';
import type { SoapTransport } from './soap.js';
import { waitForTask } from './tasks.js';
import type { Extent, MoRef } from './types.js';
import { isFault, VimFaultError } from './vim-fault.js';
import { int, list, moRef, type VimValue } from './vim-value.js';

/** One DiskChangeInfo answer, in bytes. */
export interface DiskChangeInfo {
  readonly startOffset: number;
  readonly length: number;
  readonly changedArea: readonly Extent[];
}

export function readDiskChangeInfo(v: VimValue | undefined): DiskChangeInfo {
  const startOffset = int(v, 'startOffset');
  const length = int(v, 'length');
  if (startOffset === undefined || length === undefined) {
    throw new OneswapError('remote', 'QueryChangedDiskAreas answered without startOffset/length; the server is not vSphere-compatible');
  }
  const changedArea: Extent[] = [];
  for (const a of list(v, 'changedArea')) {
    const start = int(a, 'start');
    const len = int(a, 'length');
    if (start !== undefined && len !== undefined && len > 0) changedArea.push({ start, length: len });
  }
  return { startOffset, length, changedArea };
}

/**
 * Pages through a disk: asks at offset 0, continues at `startOffset + length` of each answer and
 * stops at the capacity. Areas are clipped to the disk and merged when they touch or overlap.
 */
export async function collectChangedAreas(
  capacityBytes: number,
  query: (startOffset: number) => Promise<DiskChangeInfo>,
  describe: string,
): Promise<Extent[]> {
  const areas: Extent[] = [];
  let offset = 0;
  while (offset < capacityBytes) {
    const answer = await query(offset);
    const next = answer.startOffset + answer.length;
    if (answer.startOffset > offset || next <= offset) {
      // Going on would skip part of the disk or never end; a full copy is the only safe answer.
      throw new OneswapError(
        'remote',
        `QueryChangedDiskAreas for ${describe} answered [${answer.startOffset}, +${answer.length}) when asked at offset ${offset}; copy the disk in full instead`,
      );
    }
    areas.push(...answer.changedArea);
    offset = next;
  }
  return normalizeExtents(areas, capacityBytes);
}

export class ChangeTracking {
  private readonly transport: SoapTransport;
  private readonly pc: PropertyCollector;

  constructor(transport: SoapTransport, pc: PropertyCollector) {
    this.transport = transport;
    this.pc = pc;
  }

  /**
   * Areas of disk `deviceKey` of `snapshot` to copy: with changeId "*" the allocated (written) areas,
   * with an earlier changeId of the same disk the areas changed since. Without a snapshot the
   * answer is up to the disk's current state, which vSphere allows only for a powered-off VM.
   */
  async queryChangedDiskAreas(vm: MoRef, snapshot: MoRef | undefined, deviceKey: number, changeId: string, capacityBytes: number): Promise<Extent[]> {
    const describe = `disk ${deviceKey} of VM ${vm.value} ${snapshot ? `at snapshot ${snapshot.value}` : 'as it is now (powered off)'} (vCenter ${this.transport.endpoint.host})`;
    const query = async (startOffset: number): Promise<DiskChangeInfo> => {
      try {
        return readDiskChangeInfo(
          await this.transport.callOne('QueryChangedDiskAreas', vm, [
            ...(snapshot ? [['snapshot', ref(snapshot)] as const] : []),
            ['deviceKey', deviceKey],
            ['startOffset', startOffset],
            ['changeId', changeId],
          ]),
        );
      } catch (err) {
        // vSphere answers FileFault when it has no tracking data for that disk and changeId.
        if (!isFault(err, 'FileFault')) throw err;
        throw new VimFaultError(
          `QueryChangedDiskAreas (changeId ${changeId}) for ${describe} failed: ${err.faultMessage || 'FileFault'}; change tracking is off or was reset for this disk: copy it in full (changeId "*" on a snapshot taken with CBT on)`,
          { type: err.faultType, message: err.faultMessage, detail: undefined },
        );
      }
    };
    return collectChangedAreas(capacityBytes, query, describe);
  }

  /**
   * Switches CBT on or off. On a powered-on VM vSphere applies it at the next stun/unstun, which
   * the next snapshot provides; the caller's snapshot cycle takes care of that.
   */
  async set(vm: MoRef, enabled: boolean, timeoutMs = 10 * 60_000): Promise<void> {
    const what = `ReconfigVM_Task (changeTrackingEnabled=${enabled}) on VM ${vm.value} (vCenter ${this.transport.endpoint.host})`;
    const task = moRef(await this.transport.callOne('ReconfigVM_Task', vm, [['spec', { $type: 'VirtualMachineConfigSpec', changeTrackingEnabled: enabled }]]));
    if (task === undefined) throw new OneswapError('remote', `${what} returned no task; check the vCenter`);
    await waitForTask(this.pc, task, { what, timeoutMs });
  }
}
