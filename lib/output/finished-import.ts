// A migration of one source VM that finished: recognised from OpenNebula alone, for a run that
// lost the record of it (a plan run killed after the VM's cleanup removed its journal, before the
// plan's status said the VM was done). Only what such a migration leaves counts: the template
// under the migration's name, made from this very source, whose disks are exactly the images the
// migration made of each of its disks under its names in its datastore, every one marked DONE
// (cleanup marks them only once the template, and the VM when asked for, exist) and usable; or,
// when the migration's journal vouches for them (killed in the cleanup), at least one.

import { vmIdentity, type VmDescription } from '../input/index.js';
import type { OneClient, OneImage, OneTemplate } from '../one/index.js';
import { imageName, templateName, type TakenNames } from './one-target.js';

export interface FinishedImport {
  readonly templateId: number;
  /** By the source disks' index. */
  readonly imageIds: readonly number[];
  /** Images of `cleaning` its cleanup had not marked DONE yet. */
  readonly unmarked: readonly number[];
}

/** Image states of a finished migration's image: ready, or attached to the VM made from its template. */
const USABLE: ReadonlySet<string> = new Set(['READY', 'USED', 'USED_PERS']);

/** What an image holds once its migration built the template: its copy, converted or not (ImageState). */
const BUILT: ReadonlySet<string | undefined> = new Set(['COPIED', 'CONVERTED', 'NOT_CONVERTED']);

/**
 * The finished migration of `vm` into `datastoreId` under `namePrefix`'s names, or undefined when
 * there is none (nothing under those names, or what is there is not all of one finished migration
 * of this VM). `taken`: the user's image and template names (namesTaken), read once for many VMs.
 * `cleaning`: the images a journal of the migration lists beside this template (a run killed in its
 * cleanup, which marks the images DONE one after the other): once one of them is DONE, the others
 * may still be as the build left them (`unmarked`).
 */
export async function finishedImport(
  one: OneClient,
  vm: VmDescription,
  target: { readonly datastoreId: number; readonly namePrefix: string },
  taken: TakenNames,
  cleaning: ReadonlySet<number> = new Set(),
): Promise<FinishedImport | undefined> {
  const name = templateName(vm, target.namePrefix);
  const listed = taken.templates.find((t) => t.name === name);
  if (listed === undefined) return undefined;
  const template = await one.template(listed.id);
  if (!madeFrom(template, vm)) return undefined;
  const disks = template.template.vectors('DISK');
  if (disks.length !== vm.disks.length) return undefined;
  const identity = vmIdentity(vm);
  const imageIds: number[] = [];
  const unmarked: number[] = [];
  // buildVmTemplate lists the disks by their index.
  for (const [i, disk] of [...vm.disks].sort((a, b) => a.index - b.index).entries()) {
    const id = Number(disks[i]!.get('IMAGE_ID'));
    if (!Number.isInteger(id)) return undefined;
    const listedImage = taken.images.find((x) => x.id === id);
    if (listedImage?.name !== imageName(vm, disk, target.namePrefix)) return undefined;
    const state = imageStateOf(await one.image(id), identity, disk.index, target.datastoreId);
    if (state === 'built' && cleaning.has(id)) unmarked.push(id);
    else if (state !== 'done') return undefined;
    imageIds.push(id);
  }
  if (unmarked.length === imageIds.length) return undefined;
  return { templateId: template.id, imageIds, unmarked };
}

/** The template says it was built from this source (buildVmTemplate's ONESWAP_SOURCE attributes). */
function madeFrom(template: OneTemplate, vm: VmDescription): boolean {
  const t = template.template;
  if (vm.source.kind === 'file') return t.get('ONESWAP_SOURCE') === vm.source.path;
  return t.get('ONESWAP_SOURCE_UUID') === (vm.source.instanceUuid || vm.source.uuid) && (t.get('ONESWAP_SOURCE') ?? '').startsWith(`vcenter://${vm.source.host}/`);
}

/** An image of disk `diskIndex` of the source, usable in the datastore: marked DONE, or as a build left it; else undefined. */
function imageStateOf(image: OneImage, identity: string, diskIndex: number, datastoreId: number): 'done' | 'built' | undefined {
  const t = image.template;
  if (image.datastoreId !== datastoreId || t.get('ONESWAP_SOURCE_VM') !== identity || t.get('ONESWAP_DISK_INDEX') !== String(diskIndex) || !USABLE.has(image.stateName)) return undefined;
  const state = t.get('ONESWAP_STATE');
  return state === 'DONE' ? 'done' : BUILT.has(state) ? 'built' : undefined;
}
