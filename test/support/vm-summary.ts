// vCenter VMs as the vSphere client hands them over, made in code for unit tests.

import type { VmDisk, VmSummary } from '../../lib/vsphere/index.js';

export const disk = (key: number, kind: VmDisk['controller']['kind'], bus: number, unit: number, extra: Partial<VmDisk> = {}): VmDisk => ({
  key,
  label: `Hard disk ${key}`,
  capacityBytes: 1 << 20,
  controller: { key: 1000 + bus, kind, model: kind === 'scsi' ? 'ParaVirtualSCSIController' : 'VirtualAHCIController', busNumber: bus },
  unitNumber: unit,
  fileName: `[ds] vm/d${key}.vmdk`,
  datastoreName: 'ds',
  datastorePath: `vm/d${key}.vmdk`,
  diskMode: 'persistent',
  thinProvisioned: true,
  backingType: 'VirtualDiskFlatVer2BackingInfo',
  ...extra,
});

export const summary = (disks: VmDisk[], o: Partial<VmSummary> = {}): VmSummary => ({
  ref: { type: 'VirtualMachine', value: 'vm-1' },
  name: 'web01',
  uuid: 'u',
  instanceUuid: 'iu',
  datacenter: 'DC0',
  path: '/DC0/vm/web01',
  powerState: 'poweredOff',
  numCPU: 2,
  numCoresPerSocket: 0,
  memoryMiB: 1024,
  firmware: 'bios',
  secureBoot: false,
  guestId: 'debian12_64Guest',
  guestFullName: 'Debian',
  annotation: '',
  changeTrackingEnabled: true,
  toolsRunning: false,
  toolsGuestId: '',
  hardwareVersion: 'vmx-19',
  disks,
  nics: [{ key: 4000, label: 'Network adapter 1', macAddress: '00:50:56:AA:BB:CC', network: 'VM Network', adapterType: 'VirtualVmxnet3', connected: true }],
  hasSnapshots: false,
  snapshots: [],
  guestNet: [],
  ...o,
});
