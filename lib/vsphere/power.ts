// VM power operations. Each is a no-op when the VM is already in the wanted state, so a resumed
// cutover can call them again.

import { setTimeout as sleep } from 'node:timers/promises';
import { OneswapError } from '../errors/index.js';
import type { PropertyCollector } from './property-collector.js';
import type { SoapTransport } from './soap.js';
import { waitForTask } from './tasks.js';
import type { MoRef, PowerState } from './types.js';
import { isFault } from './vim-fault.js';
import { moRef, text } from './vim-value.js';
import { readPowerState } from './vm-inventory.js';

const TASK_TIMEOUT_MS = 10 * 60_000;

export class PowerControl {
  private readonly transport: SoapTransport;
  private readonly pc: PropertyCollector;
  /** How often power state is polled while waiting. */
  pollMs = 1000;

  constructor(transport: SoapTransport, pc: PropertyCollector) {
    this.transport = transport;
    this.pc = pc;
  }

  private get host(): string {
    return this.transport.endpoint.host;
  }

  async powerState(vm: MoRef): Promise<PowerState> {
    const props = await this.pc.retrieveOne(vm, ['runtime.powerState']);
    return readPowerState(text(props.get('runtime.powerState')));
  }

  /** Asks the guest OS to shut down through VMware Tools and waits until the VM is off (or `signal` aborts the wait). */
  async shutdownGuest(vm: MoRef, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    if ((await this.powerState(vm)) === 'poweredOff') return;
    try {
      await this.transport.call('ShutdownGuest', vm);
    } catch (err) {
      // The guest may have gone down on its own between the two calls.
      if (!(isFault(err, 'InvalidPowerState') && (await this.powerState(vm)) === 'poweredOff')) throw err;
    }
    await this.waitForPowerState(vm, 'poweredOff', timeoutMs, 'after ShutdownGuest; the guest ignored the request or is still shutting down: retry, or power the VM off', signal);
  }

  async powerOff(vm: MoRef): Promise<void> {
    if ((await this.powerState(vm)) === 'poweredOff') return;
    await this.runPowerTask('PowerOffVM_Task', vm, 'poweredOff');
  }

  async powerOn(vm: MoRef): Promise<void> {
    if ((await this.powerState(vm)) === 'poweredOn') return;
    await this.runPowerTask('PowerOnVM_Task', vm, 'poweredOn');
  }

  private async runPowerTask(method: string, vm: MoRef, wanted: PowerState): Promise<void> {
    const what = `${method} on VM ${vm.value} (vCenter ${this.host})`;
    try {
      const task = moRef(await this.transport.callOne(method, vm));
      if (task === undefined) throw new OneswapError('remote', `${what} returned no task; check the vCenter`);
      await waitForTask(this.pc, task, { what, timeoutMs: TASK_TIMEOUT_MS });
    } catch (err) {
      // Someone else changed the power state first: the goal is reached all the same.
      if (isFault(err, 'InvalidPowerState') && (await this.powerState(vm)) === wanted) return;
      throw err;
    }
  }

  async waitForPowerState(vm: MoRef, wanted: PowerState, timeoutMs: number, advice = 'after the request; check the VM in vCenter', signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const state = await this.powerState(vm);
      if (state === wanted) return;
      if (Date.now() >= deadline) {
        throw new OneswapError('conflict', `VM ${vm.value} (vCenter ${this.host}) is still ${state}, not ${wanted}, ${Math.round(timeoutMs / 1000)} s ${advice}`);
      }
      try {
        await sleep(Math.min(this.pollMs, Math.max(0, deadline - Date.now())), undefined, signal ? { signal } : {});
      } catch {
        throw new OneswapError('interrupted', `stopped waiting for VM ${vm.value} to be ${wanted} (it was ${state})`);
      }
    }
  }
}
