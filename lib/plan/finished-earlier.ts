// The plan's VMs an earlier run finished although its status does not say so: a run killed after a
// VM's cleanup (images marked DONE, journal removed) and before the status write that follows, or
// in that cleanup (whose rest is done here).
// Started again, such a VM would clash with its own images and template; recognised here from
// OpenNebula (finishedImport), it is skipped as finished instead. One read of the vCenter inventory
// for all the VMs (findVms) and one of the user's names; a VM's template and images are read only
// when its template's name is taken.

import { OneswapError } from '../errors/index.js';
import { describeVcenterVm, vmIdentity } from '../input/index.js';
import type { OneClient } from '../one/index.js';
import { finishedImport, markImage, namesTaken, type FinishedImport } from '../output/index.js';
import { Journal, type JournalData } from '../supervisor/index.js';
import type { VSphereClient } from '../vsphere/index.js';
import type { PlannedVm } from './planned-vm.js';

export interface FinishedEarlierContext {
  readonly vsphere: VSphereClient;
  readonly one: OneClient;
  /** The vCenter as imports name it in the images' source attributes. */
  readonly vcenterHost: string;
  readonly stateDir: string;
}

/** Per plan key, the finished migration of each of `vms` that has one. */
export async function finishedEarlier(ctx: FinishedEarlierContext, vms: readonly PlannedVm[]): Promise<Map<string, FinishedImport>> {
  const out = new Map<string, FinishedImport>();
  if (vms.length === 0) return out;
  const inventory = await ctx.vsphere.findVms(vms.map((v) => v.query));
  const taken = await namesTaken(ctx.one);
  for (const [i, planned] of vms.entries()) {
    const found = inventory.found[i]!;
    // Not found or ambiguous: its migration says so when it runs.
    if (!found.ok) continue;
    const description = describeVcenterVm(ctx.vcenterHost, found.vm);
    const { journal, resumed } = await Journal.open(ctx.stateDir, vmIdentity(description), planned.datastoreId);
    const finished = await finishedImport(ctx.one, description, planned, taken, cleaningOf(resumed ? journal.data : undefined));
    if (finished === undefined) continue;
    if (resumed && !(await finishCleanup(ctx.one, journal, finished, found.vm.name))) continue;
    out.set(planned.key, finished);
  }
  return out;
}

/** The images of a journal past the build: its cleanup may have marked some DONE and not the rest. */
export function cleaningOf(journal: JournalData | undefined): ReadonlySet<number> {
  return new Set(journal?.templateId !== undefined ? journal.disks.map((d) => d.imageId) : []);
}

/**
 * The cleanup a run killed in it left undone, when the VM's journal lists that very template and
 * those images: the rest marked DONE, the journal removed. False when the journal is another
 * migration's (or a live process holds it), which then goes on as usual.
 */
async function finishCleanup(one: OneClient, journal: Journal, finished: FinishedImport, label: string): Promise<boolean> {
  const ids = journal.data.disks.map((d) => d.imageId);
  const same = journal.data.templateId === finished.templateId && ids.length === finished.imageIds.length && finished.imageIds.every((id) => ids.includes(id));
  if (!same) return false;
  try {
    await journal.lock(label);
  } catch (err) {
    if (err instanceof OneswapError && err.kind === 'conflict') return false;
    throw err;
  }
  try {
    for (const id of finished.unmarked) await markImage(one, id, 'DONE');
    await journal.remove();
  } finally {
    await journal.unlock();
  }
  return true;
}
