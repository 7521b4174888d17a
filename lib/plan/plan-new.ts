// The starting plan `oneswap plan new` writes: the vCenter, defaults with the network map it could
// infer (a vCenter network that has an OpenNebula network of the same name), the default budgets,
// and one entry per VM with a comment of the facts a reviewer decides on (power, CBT, hardware
// version, disk sizes, guest, host). Comments need the yaml Document API: plain objects lose them.

import { Document, type Pair, type Scalar, type YAMLMap, type YAMLSeq } from 'yaml';
import { describeVcenterVm } from '../input/index.js';
import { formatBytes } from '../progress/index.js';
import type { VmSummary } from '../vsphere/index.js';
import { DEFAULT_BUDGETS, PLAN_VERSION } from './plan-file.js';

export interface StartingPlanInput {
  readonly vcenter: {
    /** host[:port] as given. */
    readonly address: string;
    readonly user: string;
    /** Absolute; absent: a commented placeholder. */
    readonly passwordFile?: string;
    readonly thumbprint?: string;
    /** Absolute. */
    readonly ca?: string;
    readonly insecure?: boolean;
    readonly datacenter?: string;
  };
  readonly endpoint?: string;
  readonly datastoreId: number;
  readonly mode: 'cold' | 'warm';
  readonly vms: readonly VmSummary[];
  /** OpenNebula's virtual networks, by name. */
  readonly oneNetworks: readonly { readonly id: number; readonly name: string }[];
}

export interface InferredNetworks {
  /** vCenter network → the OpenNebula network of the same name. */
  readonly mapped: ReadonlyMap<string, string>;
  /** vCenter networks without exactly one OpenNebula network of their name, with why. */
  readonly unmapped: readonly string[];
}

/** The plan as YAML text; `parsePlan` reads it back as written. */
export function startingPlan(input: StartingPlanInput): string {
  const networks = inferNetworks(input.vms, input.oneNetworks);
  const doc = new Document({});
  doc.commentBefore =
    ` oneswap plan: ${input.vms.length} VM${input.vms.length === 1 ? '' : 's'} of vCenter ${input.vcenter.address}, written by oneswap plan new.\n` +
    ' Review it (docs/PLANS.md describes every key), then: oneswap plan check PLAN';
  const root = doc.contents as YAMLMap;
  root.add(doc.createPair('version', PLAN_VERSION));

  const vc = doc.createNode({ host: input.vcenter.address, user: input.vcenter.user }) as YAMLMap;
  const pwComment = ' passwordFile: FILE   (the password on its first line, mode 0600; or set ONESWAP_VCENTER_PASSWORD; never the password here)';
  const tls = input.vcenter.thumbprint !== undefined ? ['thumbprint', input.vcenter.thumbprint] : input.vcenter.ca !== undefined ? ['ca', input.vcenter.ca] : input.vcenter.insecure ? ['insecure', true] : undefined;
  if (input.vcenter.passwordFile !== undefined) vc.add(doc.createPair('passwordFile', input.vcenter.passwordFile));
  const after: Array<[string, unknown]> = [...(tls ? [tls as [string, unknown]] : []), ...(input.vcenter.datacenter === undefined ? [] : [['datacenter', input.vcenter.datacenter] as [string, unknown]])];
  for (const [k, v] of after) vc.add(doc.createPair(k, v));
  if (input.vcenter.passwordFile === undefined) {
    const next = vc.items[2] as Pair<Scalar> | undefined;
    if (next !== undefined) next.key.commentBefore = pwComment;
    else vc.comment = pwComment;
  }
  root.add(doc.createPair('vcenter', vc));
  if (input.endpoint !== undefined) root.add(doc.createPair('one', { endpoint: input.endpoint }));

  const defaults = doc.createNode({
    datastore: input.datastoreId,
    mode: input.mode,
    ...(input.mode === 'cold' ? { shutdown: false } : { enableCbt: false }),
    networkMap: Object.fromEntries(networks.mapped),
  }) as YAMLMap;
  if (networks.unmapped.length > 0) {
    (defaults.get('networkMap', true) as unknown as YAMLMap).comment = ` not mapped: ${networks.unmapped.join('; ')}`;
  }
  root.add(doc.createPair('defaults', defaults));
  root.add(doc.createPair('budgets', { ...DEFAULT_BUDGETS }));

  const names = new Map<string, number>();
  for (const vm of input.vms) names.set(vm.name, (names.get(vm.name) ?? 0) + 1);
  const entries = doc.createNode(input.vms.map((vm) => ((names.get(vm.name) ?? 0) > 1 ? { path: vm.path } : { name: vm.name }))) as YAMLSeq<YAMLMap>;
  input.vms.forEach((vm, i) => {
    entries.items[i]!.commentBefore = ` ${vmFacts(input.vcenter.address, vm)}`;
  });
  root.add(doc.createPair('vms', entries));
  return doc.toString({ lineWidth: 0 });
}

export function inferNetworks(vms: readonly VmSummary[], oneNetworks: StartingPlanInput['oneNetworks']): InferredNetworks {
  const used = [...new Set(vms.flatMap((vm) => vm.nics.map((n) => n.network)).filter((n) => n !== ''))].sort();
  const mapped = new Map<string, string>();
  const unmapped: string[] = [];
  for (const net of used) {
    const same = oneNetworks.filter((n) => n.name === net);
    if (same.length === 1) mapped.set(net, net);
    else if (same.length === 0) unmapped.push(`${net} (no OpenNebula network of that name)`);
    else unmapped.push(`${net} (OpenNebula networks ${same.map((n) => n.id).join(', ')} all have that name; map it to one id)`);
  }
  return { mapped, unmapped };
}

/** "on, CBT off, vmx-13, boot disk 1.0 GiB, disks 3.0 GiB, guest otherGuest, host DC0_H0" */
export function vmFacts(address: string, vm: VmSummary): string {
  const power = vm.powerState === 'poweredOn' ? 'on' : vm.powerState === 'poweredOff' ? 'off' : vm.powerState;
  const boot = describeVcenterVm(address, vm).disks[0];
  const total = vm.disks.reduce((sum, d) => sum + d.capacityBytes, 0);
  return [
    power,
    `CBT ${vm.changeTrackingEnabled ? 'on' : 'off'}`,
    vm.hardwareVersion || 'hardware version unknown',
    ...(boot === undefined ? ['no disk'] : [`boot disk ${formatBytes(boot.capacityBytes)}`, `${vm.disks.length === 1 ? 'disk' : `${vm.disks.length} disks`} ${formatBytes(total)}`]),
    `guest ${vm.guestId || 'unknown'}`,
    `host ${vm.host ?? 'unknown'}`,
  ].join(', ');
}
