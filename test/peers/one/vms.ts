/**
 * VMs: one.vm.allocate, one.vm.info, one.vm.action (action first!),
 * one.vmpool.info (4 ints after the session in 7.4, §5.7).
 */
import { poolXml, vmXml } from './documents.js';
import { ErrorCode, RequestError, noExists } from './errors.js';
import { parseOrInternal } from './images.js';
import { CallContext, Sim } from './simulator.js';
import { VM_STATE, VmRec } from './state.js';
import { checkVmRestricted } from './templates.js';
import { buildVm, releaseVm } from './vm-build.js';
import { XrValue, bool, int, str } from './wire.js';

const STATE_NAMES: Record<number, string> = {
  0: 'INIT', 1: 'PENDING', 2: 'HOLD', 3: 'ACTIVE', 4: 'STOPPED', 5: 'SUSPENDED', 6: 'DONE', 8: 'POWEROFF', 9: 'UNDEPLOYED', 10: 'CLONING', 11: 'CLONING_FAILURE',
};

export function getVm(sim: Sim, id: number): VmRec {
  const vm = sim.pools.vms.get(id);
  if (!vm) throw noExists('vm', id);
  return vm;
}

export function vmAllocate(sim: Sim, call: CallContext, p: XrValue[]): number {
  const t = parseOrInternal(str(p, 1));
  const hold = bool(p, 2);
  checkVmRestricted(call, t);
  const deployId = t.erase('DEPLOY_ID');
  if (deployId !== undefined) {
    if (/^one-\d+$/.test(deployId)) throw new RequestError(ErrorCode.ALLOCATE, 'Trying to import an OpenNebula VM: \'one-*\'.', -1, 'vm');
    const dup = [...sim.pools.vms.values()].find((v) => v.deployId === deployId && v.state !== VM_STATE.DONE);
    if (dup) throw new RequestError(ErrorCode.ALLOCATE, `Virtual Machine ${dup.id} already imported.`, -1, 'vm');
    t.set('IMPORTED', 'YES');
  }
  const name = t.get('NAME') ?? `one-${sim.pools.next.vm}`;
  return buildVm(sim, call, t, { name, hold: hold || deployId !== undefined, deployId });
}

export function vmInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  const vm = getVm(sim, int(p, 1));
  sim.authorize(call, vm, 'USE', 'vm');
  return vmXml(sim.pools, vm);
}

/** state → allowed actions (DispatchManager), simplified to the states the simulator reaches. */
const ACTIONS: Record<string, { from: number[]; to: number; lcm?: number }> = {
  terminate: { from: [1, 2, 3, 4, 5, 8, 9], to: VM_STATE.DONE },
  'terminate-hard': { from: [1, 2, 3, 4, 5, 8, 9], to: VM_STATE.DONE },
  hold: { from: [VM_STATE.PENDING], to: VM_STATE.HOLD },
  release: { from: [VM_STATE.HOLD], to: VM_STATE.PENDING },
  poweroff: { from: [VM_STATE.ACTIVE], to: VM_STATE.POWEROFF },
  'poweroff-hard': { from: [VM_STATE.ACTIVE], to: VM_STATE.POWEROFF },
  undeploy: { from: [VM_STATE.ACTIVE, VM_STATE.POWEROFF], to: VM_STATE.UNDEPLOYED },
  'undeploy-hard': { from: [VM_STATE.ACTIVE, VM_STATE.POWEROFF], to: VM_STATE.UNDEPLOYED },
  stop: { from: [VM_STATE.ACTIVE], to: VM_STATE.STOPPED },
  suspend: { from: [VM_STATE.ACTIVE], to: VM_STATE.SUSPENDED },
  resume: { from: [VM_STATE.POWEROFF, VM_STATE.SUSPENDED, VM_STATE.STOPPED, VM_STATE.UNDEPLOYED], to: VM_STATE.ACTIVE, lcm: 3 },
  reboot: { from: [VM_STATE.ACTIVE], to: VM_STATE.ACTIVE, lcm: 3 },
  'reboot-hard': { from: [VM_STATE.ACTIVE], to: VM_STATE.ACTIVE, lcm: 3 },
  resched: { from: [VM_STATE.ACTIVE], to: VM_STATE.ACTIVE, lcm: 3 },
  unresched: { from: [VM_STATE.ACTIVE], to: VM_STATE.ACTIVE, lcm: 3 },
};

export function vmAction(sim: Sim, call: CallContext, p: XrValue[]): number {
  const action = str(p, 1);
  const id = int(p, 2);
  const spec = ACTIONS[action];
  if (!spec) throw new RequestError(ErrorCode.ACTION, `Virtual machine action "${action}" is not supported`, id, 'vm');
  const vm = getVm(sim, id);
  sim.authorize(call, vm, 'MANAGE', 'vm');
  if (!spec.from.includes(vm.state)) {
    throw new RequestError(ErrorCode.ACTION, `Could not ${action} VM ${id}, wrong state ${STATE_NAMES[vm.state] ?? vm.state}.`, id, 'vm');
  }
  vm.prevState = vm.state;
  vm.prevLcmState = vm.lcmState;
  vm.state = spec.to;
  vm.lcmState = spec.lcm ?? 0;
  if (action === 'resched') vm.resched = 1;
  if (action === 'unresched') vm.resched = 0;
  if (spec.to === VM_STATE.DONE) {
    vm.etime = Sim.now();
    releaseVm(sim, vm);
  }
  return id;
}

/** [A:siiii] filter, start, end, state (-2 any, -1 any but DONE, ≥0 that state) */
export function vmPoolInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  const state = int(p, 4);
  if (state < -2) throw new RequestError(ErrorCode.XML_RPC_API, 'Incorrect filter_flag, state', -1, 'vm');
  const candidates = [...sim.pools.vms.values()].filter((v) => (state === -2 ? true : state === -1 ? v.state !== VM_STATE.DONE : v.state === state));
  const list = sim.filterPool(call, candidates, int(p, 1), int(p, 2), int(p, 3));
  return poolXml('VM_POOL', list.map((v) => vmXml(sim.pools, v)));
}

/** Setup API helper: move a VM to a state as the scheduler/hypervisor would (no host is simulated). */
export function setVmState(sim: Sim, id: number, state: number, lcmState = state === VM_STATE.ACTIVE ? 3 : 0): void {
  const vm = getVm(sim, id);
  vm.prevState = vm.state;
  vm.prevLcmState = vm.lcmState;
  vm.state = state;
  vm.lcmState = lcmState;
  if (state === VM_STATE.DONE) releaseVm(sim, vm);
}
