/**
 * Building a VM from a template (one.template.instantiate, one.vm.allocate):
 * image acquisition (READY → USED / USED_PERS, §5.7), DISK attributes with
 * DRIVER forced from the image FORMAT (§3.2), NIC leases (§5.7), the
 * TEMPLATE / USER_TEMPLATE split, and releasing everything on terminate.
 */
import { ErrorCode, RequestError } from './errors.js';
import { CallContext, Sim } from './simulator.js';
import { IMAGE_STATE, ImageRec, VM_STATE, VmRec, defaultPerms } from './state.js';
import { Template } from './template-syntax.js';
import { NicLease, acquireLease, leaseIp, leaseMac, releaseLease, releaseVmLeases } from './vnets.js';

/** Attributes that stay in the VM TEMPLATE; everything else goes to USER_TEMPLATE. */
const SYSTEM_ATTRS = new Set([
  'CPU', 'VCPU', 'VCPU_MAX', 'MEMORY', 'MEMORY_MAX', 'MEMORY_SLOTS', 'MEMORY_RESIZE_MODE', 'HOT_RESIZE', 'DISK', 'NIC', 'NIC_ALIAS',
  'NIC_DEFAULT', 'OS', 'FEATURES', 'GRAPHICS', 'INPUT', 'VIDEO', 'CONTEXT', 'RAW', 'CPU_MODEL', 'TOPOLOGY', 'NUMA_NODE', 'PCI', 'VMGROUP',
  'SECURITY_GROUP_RULE', 'TEMPLATE_ID', 'VMID', 'EMULATOR', 'SPICE_OPTIONS', 'TM_MAD_SYSTEM', 'SCHED_ACTION', 'BACKUP_CONFIG',
]);

const DISK_TYPE_NAMES = ['FILE', 'CDROM', 'BLOCK', 'RBD', 'RBD_CDROM', 'GLUSTER', 'GLUSTER_CDROM', 'SHEEPDOG', 'SHEEPDOG_CDROM', 'ISCSI', 'FILE_SYSTEM'];

function findImage(sim: Sim, call: CallContext, disk: Map<string, string>): ImageRec | undefined | 'volatile' {
  const idStr = disk.get('IMAGE_ID');
  if (idStr !== undefined) {
    const id = Number(idStr);
    const img = Number.isInteger(id) ? sim.pools.images.get(id) : undefined;
    if (!img) throw new RequestError(ErrorCode.ALLOCATE, `Error getting image [${idStr}].`, -1, 'vm');
    return img;
  }
  const name = disk.get('IMAGE');
  if (name === undefined) return 'volatile';
  let uid = call.uid;
  const uname = disk.get('IMAGE_UNAME');
  if (disk.get('IMAGE_UID') !== undefined) uid = Number(disk.get('IMAGE_UID'));
  else if (uname !== undefined) uid = [...sim.pools.users.values()].find((u) => u.name === uname)?.id ?? -2;
  const img = [...sim.pools.images.values()].find((i) => i.name === name && i.uid === uid);
  if (!img) throw new RequestError(ErrorCode.ALLOCATE, `Error getting image ${name}.`, -1, 'vm');
  return img;
}

/** ImageManager::acquire_image */
export function acquireImage(img: ImageRec, vmId: number): void {
  const fail = (why: string): never => {
    throw new RequestError(ErrorCode.ALLOCATE, `Cannot acquire image ${img.id}, ${why}`, -1, 'vm');
  };
  switch (img.state) {
    case IMAGE_STATE.READY:
      img.prevState = img.state;
      img.state = img.persistent ? IMAGE_STATE.USED_PERS : IMAGE_STATE.USED;
      break;
    case IMAGE_STATE.USED:
      break;
    case IMAGE_STATE.USED_PERS:
    case IMAGE_STATE.LOCKED_USED_PERS:
      fail('it is persistent and already in use');
      break;
    case IMAGE_STATE.LOCKED_USED:
      if (img.persistent) fail('it is persistent and already in use');
      break;
    case IMAGE_STATE.LOCKED:
      fail('it is locked');
      break;
    case IMAGE_STATE.DISABLED:
      fail('it is disabled');
      break;
    case IMAGE_STATE.ERROR:
      fail('it is in an error state');
      break;
    default:
      fail('it is in an unknown state');
  }
  img.runningVms++;
  img.vms.push(vmId);
}

/** ImageManager::release_image */
export function releaseImage(img: ImageRec, vmId: number): void {
  img.vms = img.vms.filter((v) => v !== vmId);
  img.runningVms = Math.max(0, img.runningVms - 1);
  if (img.runningVms > 0) return;
  const prev = img.state;
  if (img.state === IMAGE_STATE.USED || img.state === IMAGE_STATE.USED_PERS) img.state = IMAGE_STATE.READY;
  else if (img.state === IMAGE_STATE.LOCKED_USED || img.state === IMAGE_STATE.LOCKED_USED_PERS) img.state = IMAGE_STATE.LOCKED;
  if (img.state !== prev) img.prevState = prev;
}

/** Image::disk_attribute: the DISK a VM (or an extended template info) gets for an image. */
export function imageDiskAttributes(sim: Sim, img: ImageRec, disk: Map<string, string>): Map<string, string> {
  const ds = sim.pools.datastores.get(img.dsId);
  const out = new Map(disk);
  const isCdrom = img.type === 1;
  const devPrefix = disk.get('DEV_PREFIX') ?? img.template.get('DEV_PREFIX') ?? (isCdrom ? 'hd' : 'sd');
  const size = Math.max(Number(disk.get('SIZE') ?? 0) || 0, img.size);
  const set = (k: string, v: string): void => {
    out.set(k, v);
  };
  for (const a of ['TARGET', 'CACHE', 'IO', 'DISCARD', 'READONLY']) {
    const v = img.template.get(a);
    if (v !== undefined && !out.has(a)) set(a, v);
  }
  set('CLONE', img.persistent ? 'NO' : 'YES');
  set('CLONE_TARGET', ds?.template.get('CLONE_TARGET') ?? 'SYSTEM');
  set('CLUSTER_ID', '0');
  set('DATASTORE', img.dsName);
  set('DATASTORE_ID', String(img.dsId));
  set('DEV_PREFIX', devPrefix);
  set('DISK_TYPE', DISK_TYPE_NAMES[img.diskType] ?? 'FILE');
  set('DRIVER', img.format !== '' ? img.format : (img.template.get('DRIVER') ?? 'raw'));
  set('FORMAT', img.format);
  set('IMAGE', img.name);
  set('IMAGE_ID', String(img.id));
  set('IMAGE_STATE', String(img.state));
  set('IMAGE_UID', String(img.uid));
  set('IMAGE_UNAME', sim.pools.userName(img.uid));
  set('LN_TARGET', ds?.template.get('LN_TARGET') ?? 'SYSTEM');
  set('ORIGINAL_SIZE', String(img.size));
  if (img.persistent) set('PERSISTENT', 'YES');
  if (!out.has('READONLY')) set('READONLY', isCdrom ? 'YES' : 'NO');
  set('SAVE', img.persistent ? 'YES' : 'NO');
  set('SIZE', String(size));
  set('SOURCE', img.source);
  set('TM_MAD', ds?.tmMad ?? '');
  set('TYPE', isCdrom ? 'CDROM' : (DISK_TYPE_NAMES[img.diskType] ?? 'FILE'));
  return out;
}

/** Assigns TARGET = <prefix><letter> to disks without one, skipping used targets. */
function assignTargets(disks: Map<string, string>[]): void {
  const used = new Set(disks.map((d) => d.get('TARGET')).filter((t): t is string => !!t));
  for (const d of disks) {
    if (d.get('TARGET')) continue;
    const prefix = d.get('DEV_PREFIX') ?? 'sd';
    for (let i = 0; i < 26; i++) {
      const t = prefix + String.fromCharCode(97 + i);
      if (!used.has(t)) {
        d.set('TARGET', t);
        used.add(t);
        break;
      }
    }
  }
}

export interface BuildVmOptions {
  name: string;
  hold: boolean;
  templateId?: number;
  deployId?: string;
}

export function buildVm(sim: Sim, call: CallContext, tmpl: Template, o: BuildVmOptions): number {
  const vmId = sim.pools.next.vm;
  const mem = Number(tmpl.get('MEMORY') ?? '');
  if (!Number.isInteger(mem) || mem <= 0) throw new RequestError(ErrorCode.ALLOCATE, 'MEMORY attribute must be a positive integer value.', -1, 'vm');
  const cpuStr = tmpl.get('CPU');
  if (cpuStr !== undefined && !(Number(cpuStr) > 0)) {
    throw new RequestError(ErrorCode.ALLOCATE, 'CPU attribute must be a positive float or integer value.', -1, 'vm');
  }
  const name = o.name;
  const nameErr = Sim.nameError(name);
  if (nameErr) throw new RequestError(ErrorCode.ALLOCATE, nameErr, -1, 'vm');

  const acquired: ImageRec[] = [];
  const leases: NicLease[] = [];
  const sys = new Template();
  const user = new Template();
  try {
    // ---------------- disks
    const disks: Map<string, string>[] = [];
    for (const [i, disk] of tmpl.vectors('DISK').entries()) {
      const found = findImage(sim, call, disk);
      let d: Map<string, string>;
      if (found === 'volatile' || found === undefined) {
        d = new Map(disk);
        if (!d.has('DEV_PREFIX')) d.set('DEV_PREFIX', 'sd');
      } else {
        sim.authorize(call, found, 'USE', 'image');
        acquireImage(found, vmId);
        acquired.push(found);
        d = imageDiskAttributes(sim, found, disk);
      }
      d.set('DISK_ID', String(i));
      disks.push(d);
    }
    assignTargets(disks);

    // ---------------- nics
    const nics: Map<string, string>[] = [];
    for (const [j, nic] of tmpl.vectors('NIC').entries()) {
      let vn;
      const nid = nic.get('NETWORK_ID');
      if (nid !== undefined) {
        vn = sim.pools.vnets.get(Number(nid));
        if (!vn) throw new RequestError(ErrorCode.ALLOCATE, `Error getting virtual network [${nid}].`, -1, 'vm');
      } else if (nic.get('NETWORK') !== undefined) {
        const nname = nic.get('NETWORK');
        const uname = nic.get('NETWORK_UNAME');
        const uid = nic.get('NETWORK_UID') !== undefined ? Number(nic.get('NETWORK_UID')) : uname !== undefined ? ([...sim.pools.users.values()].find((u) => u.name === uname)?.id ?? -2) : call.uid;
        vn = [...sim.pools.vnets.values()].find((v) => v.name === nname && v.uid === uid);
        if (!vn) throw new RequestError(ErrorCode.ALLOCATE, `Error getting virtual network ${nname}.`, -1, 'vm');
      } else {
        throw new RequestError(ErrorCode.ALLOCATE, 'A NIC must include NETWORK_ID or NETWORK.', -1, 'vm');
      }
      sim.authorize(call, vn, 'USE', 'vnet');
      const lease = acquireLease(vn, nic, vmId);
      leases.push(lease);
      const n = new Map(nic);
      n.set('AR_ID', String(lease.ar.arId));
      n.set('BRIDGE', vn.bridge);
      n.set('BRIDGE_TYPE', vn.bridgeType);
      n.set('CLUSTER_ID', '0');
      const ip = leaseIp(lease);
      if (ip) n.set('IP', ip);
      n.set('MAC', leaseMac(lease));
      n.set('NAME', `NIC${j}`);
      n.set('NETWORK', vn.name);
      n.set('NETWORK_ID', String(vn.id));
      n.set('NETWORK_UNAME', sim.pools.userName(vn.uid));
      n.set('NIC_ID', String(j));
      n.set('SECURITY_GROUPS', vn.template.get('SECURITY_GROUPS') ?? '0');
      n.set('TARGET', `one-${vmId}-${j}`);
      n.set('VN_MAD', vn.vnMad);
      nics.push(n);
    }

    // ---------------- split TEMPLATE / USER_TEMPLATE
    for (const a of tmpl.attrs) {
      if (a.name === 'NAME' || a.name === 'DISK' || a.name === 'NIC') continue;
      const target = SYSTEM_ATTRS.has(a.name) || a.name.startsWith('AUTOMATIC_') ? sys : user;
      if (a.vector) target.addVector(a.name, new Map(a.vector));
      else target.add(a.name, a.value ?? '');
    }
    for (const d of disks) sys.addVector('DISK', d);
    for (const n of nics) sys.addVector('NIC', n);
    sys.set('AUTOMATIC_DS_REQUIREMENTS', '("CLUSTERS/ID" @> 0)');
    if (nics.length > 0) sys.set('AUTOMATIC_NIC_REQUIREMENTS', '("CLUSTERS/ID" @> 0)');
    sys.set('AUTOMATIC_REQUIREMENTS', '(CLUSTER_ID = 0) & !(PUBLIC_CLOUD = YES) & !(PIN_POLICY = PINNED)');
    if (!sys.has('CPU')) sys.add('CPU', '1');
    if (o.templateId !== undefined) sys.set('TEMPLATE_ID', String(o.templateId));
    sys.set('VMID', String(vmId));
  } catch (e) {
    for (const img of acquired) releaseImage(img, vmId);
    for (const l of leases) releaseLease(l);
    throw e;
  }
  sim.pools.next.vm++;
  const vm: VmRec = {
    id: vmId,
    uid: call.uid,
    gid: call.gid,
    name,
    perms: defaultPerms(),
    lastPoll: 0,
    state: o.hold ? VM_STATE.HOLD : VM_STATE.PENDING,
    lcmState: 0,
    prevState: o.hold ? VM_STATE.HOLD : VM_STATE.PENDING,
    prevLcmState: 0,
    resched: 0,
    stime: Sim.now(),
    etime: 0,
    deployId: o.deployId ?? '',
    template: sys,
    userTemplate: user,
  };
  sim.pools.vms.set(vmId, vm);
  return vmId;
}

/** Frees the VM's images and leases (terminate → DONE). */
export function releaseVm(sim: Sim, vm: VmRec): void {
  for (const d of vm.template.vectors('DISK')) {
    const id = d.get('IMAGE_ID');
    const img = id !== undefined ? sim.pools.images.get(Number(id)) : undefined;
    if (img && img.vms.includes(vm.id)) releaseImage(img, vm.id);
  }
  releaseVmLeases(sim, vm.id);
}
