// VM snapshots: create, remove, list, and the disks as frozen in a snapshot's own config (where CBT
// changeIds must be read from, never from the VM's live config).

import { OneswapError } from '../errors/index.js';
import type { PropertyCollector } from './property-collector.js';
import type { SoapTransport } from './soap.js';
import { waitForTask } from './tasks.js';
import type { MoRef, Snapshot, VmDisk } from './types.js';
import { isFault } from './vim-fault.js';
import { list, moRef, text, type VimValue } from './vim-value.js';
import { readDisks } from './vm-hardware.js';

export interface CreateSnapshotOptions {
  readonly name: string;
  readonly description?: string;
  /** Include guest memory; oneswap never needs it, so the default is false. */
  readonly memory?: boolean;
  /** Quiesce the guest file systems through VMware Tools. */
  readonly quiesce?: boolean;
  readonly timeoutMs?: number;
}

export interface RemoveSnapshotOptions {
  /** Consolidate disks after removal (default true); false leaves redo logs behind. */
  readonly consolidate?: boolean;
  readonly timeoutMs?: number;
}

/** Snapshot creation on a busy VM takes minutes; removal consolidates and can take hours. */
const CREATE_TIMEOUT_MS = 30 * 60_000;
const REMOVE_TIMEOUT_MS = 4 * 60 * 60_000;

export class Snapshots {
  private readonly transport: SoapTransport;
  private readonly pc: PropertyCollector;

  constructor(transport: SoapTransport, pc: PropertyCollector) {
    this.transport = transport;
    this.pc = pc;
  }

  private get host(): string {
    return this.transport.endpoint.host;
  }

  /** Creates a snapshot and returns it with its disks (and their changeIds). */
  async create(vm: MoRef, options: CreateSnapshotOptions): Promise<Snapshot> {
    const what = `CreateSnapshot_Task "${options.name}" on VM ${vm.value} (vCenter ${this.host})`;
    const task = moRef(await this.transport.callOne('CreateSnapshot_Task', vm, [
      ['name', options.name],
      ['description', options.description ?? ''],
      ['memory', options.memory ?? false],
      ['quiesce', options.quiesce ?? false],
    ]));
    if (task === undefined) throw new OneswapError('remote', `${what} returned no task; check the vCenter`);
    const snapRef = moRef(await waitForTask(this.pc, task, { what, timeoutMs: options.timeoutMs ?? CREATE_TIMEOUT_MS }));
    if (snapRef === undefined) throw new OneswapError('remote', `${what} succeeded without naming the snapshot; list the VM's snapshots`);

    const contents = await this.pc.retrieve([
      {
        propSet: [
          { type: 'VirtualMachine', pathSet: ['snapshot.rootSnapshotList'] },
          { type: 'VirtualMachineSnapshot', pathSet: ['config.hardware.device'] },
        ],
        objectSet: [{ obj: vm }, { obj: snapRef }],
      },
    ]);
    const tree = contents.find((c) => c.obj.type === 'VirtualMachine')?.props.get('snapshot.rootSnapshotList');
    const node = flattenSnapshotTree(tree).find((s) => s.ref.value === snapRef.value);
    const devices = contents.find((c) => c.obj.type === 'VirtualMachineSnapshot')?.props.get('config.hardware.device');
    return {
      ref: snapRef,
      name: node?.name ?? options.name,
      description: node?.description ?? options.description ?? '',
      createTime: node?.createTime ?? '',
      disks: readDisks(list(devices)),
    };
  }

  /** Removes one snapshot (not its children), consolidating by default. */
  async remove(snapshot: MoRef, options: RemoveSnapshotOptions = {}): Promise<void> {
    const what = `RemoveSnapshot_Task on snapshot ${snapshot.value} (vCenter ${this.host})`;
    let task: MoRef | undefined;
    try {
      task = moRef(await this.transport.callOne('RemoveSnapshot_Task', snapshot, [
        ['removeChildren', false],
        ['consolidate', options.consolidate ?? true],
      ]));
    } catch (err) {
      if (isFault(err, 'ManagedObjectNotFound')) throw notFound(snapshot, this.host, err);
      throw err;
    }
    if (task === undefined) throw new OneswapError('remote', `${what} returned no task; check the vCenter`);
    await waitForTask(this.pc, task, { what, timeoutMs: options.timeoutMs ?? REMOVE_TIMEOUT_MS });
  }

  /** The VM's snapshot tree, flattened depth-first (parents before children). */
  async list(vm: MoRef): Promise<Snapshot[]> {
    const props = await this.pc.retrieveOne(vm, ['snapshot.rootSnapshotList']);
    return flattenSnapshotTree(props.get('snapshot.rootSnapshotList'));
  }

  /** Disks as recorded in the snapshot's own config, with the changeIds of that moment. */
  async disks(snapshot: MoRef): Promise<VmDisk[]> {
    try {
      const props = await this.pc.retrieveOne(snapshot, ['config.hardware.device']);
      return readDisks(list(props.get('config.hardware.device')));
    } catch (err) {
      if (isFault(err, 'ManagedObjectNotFound')) throw notFound(snapshot, this.host, err);
      throw err;
    }
  }
}

function notFound(snapshot: MoRef, host: string, cause: unknown): OneswapError {
  return new OneswapError('not-found', `vCenter ${host} has no snapshot ${snapshot.value}; it was removed: list the VM's snapshots again`, { cause });
}

export function flattenSnapshotTree(roots: VimValue | undefined): Snapshot[] {
  const out: Snapshot[] = [];
  const walk = (nodes: readonly VimValue[]): void => {
    for (const node of nodes) {
      const ref = moRef(node, 'snapshot');
      if (ref !== undefined) {
        out.push({ ref, name: text(node, 'name') ?? '', description: text(node, 'description') ?? '', createTime: text(node, 'createTime') ?? '' });
      }
      walk(list(node, 'childSnapshotList'));
    }
  };
  walk(list(roots));
  return out;
}
