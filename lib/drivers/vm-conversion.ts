// After a marketplace import: the guest conversion of the whole VM, run by the `cp` of one of its
// disks, and the VM template rewritten from what the conversion found.
//
// Why in `cp` and not in a hook: the stock export (Sunstone's Import button, `onemarketapp
// export`) creates the images and the template and returns; nothing else runs afterwards. A hook
// would need onehem, a HOOK object created after oned restarts, and could only act once the images
// are READY — when a user may already instantiate the unconverted template. In `cp`, every disk
// of the VM keeps its image LOCKED until the VM is converted, so READY means ready to boot.
//
// How the `cp`s of one VM meet: the template the export created lists their images. Each `cp`
// records COPIED on its image, waits until every image of that template is COPIED (or one
// failed), and the first to take the per-template lock converts all of them; the others wait for
// the outcome, CONVERTED or NOT_CONVERTED (no operating system on the disks). A converter that
// died (kill -9) leaves its lock to the next waiter, which resumes the conversion (its commit
// marker makes that safe).

import { join } from 'node:path';
import { describeError, OneswapError } from '../errors/index.js';
import { vmIdentity, type VmDescription } from '../input/index.js';
import { OneApiError, OneErrorCode, PoolFilter, Template, type OneClient, type OneImage, type OneTemplate } from '../one/index.js';
import { buildVmTemplate, CONVERSION_OUTCOMES, convertedGuestOf, copiedImageTarget, forQemu, type ConvertedGuest, type ImageState } from '../output/index.js';
import { describeEvent } from '../progress/index.js';
import { convertImages, describeConversion, newRunId, PidLock, sourceMacsNetwork, vmConversionRequest, type MigrationEvent } from '../supervisor/index.js';
import type { DriverConfig } from './config.js';
import type { CopiedDisk } from './datastore-cp.js';

export interface GroupContext {
  readonly one: OneClient;
  readonly imageId: number;
  readonly config: DriverConfig;
  readonly log: (line: string) => void;
  readonly signal: AbortSignal;
  /** How long to look for the template the export creates right after the images. */
  readonly templateWaitMs?: number;
  readonly pollMs?: number;
}

type Member = { readonly image: OneImage; readonly index: number };

const stateOf = (m: Member): ImageState | undefined => m.image.template.get('ONESWAP_STATE') as ImageState | undefined;
const concluded = (m: Member): boolean => {
  const state = stateOf(m);
  return state !== undefined && CONVERSION_OUTCOMES.includes(state);
};

export async function convertImportedVm(ctx: GroupContext, copied: CopiedDisk): Promise<void> {
  const { one, imageId, log } = ctx;
  const pollMs = ctx.pollMs ?? 1000;
  const template = await findTemplate(ctx, pollMs);
  if (!template) {
    log(`INFO: no VM template uses image ${imageId}: the disk is copied, not converted (to convert it: oneswap convert --image ${imageId})`);
    return;
  }
  const ids = template.template.vectors('DISK').map((d) => Number(d.get('IMAGE_ID'))).filter((n) => Number.isInteger(n));
  await copied.progress.say(`copied; waiting for the other disks of template ${template.id}`);

  for (;;) {
    const { members, deleted } = await membersOf(one, ids, copied.vm);
    if (deleted.length > 0) {
      const what = `image(s) ${deleted.join(', ')} of the template were deleted`;
      await markTemplate(one, template.id, `not converted: ${what}`);
      log(`WARN: template ${template.id} not converted: ${what}`);
      return;
    }
    const failed = members.filter((m) => m.image.stateName === 'ERROR' || m.image.template.get('ONESWAP_STATE') === 'FAILED');
    if (failed.length > 0) {
      const what = failed.map((m) => `image ${m.image.id} (disk ${m.index}): ${m.image.template.get('ERROR') ?? 'copy failed'}`).join('; ');
      await markTemplate(one, template.id, `not converted: ${what}`);
      log(`WARN: template ${template.id} not converted: ${what}`);
      await copied.progress.say('copied; VM not converted because another disk failed');
      return;
    }
    // The converter wrote the outcome on every image of the group.
    if (members.every(concluded)) return;
    if (members.some((m) => m.image.template.get('ONESWAP_CONVERT_ERROR'))) return;
    if (members.every((m) => stateOf(m) === 'COPIED' || concluded(m))) {
      const lock = new PidLock(join(ctx.config.stateDir, 'locks', `convert-template-${template.id}.lock`));
      if ((await lock.tryAcquire()) === undefined) {
        try {
          // Another cp may have finished between our look and the lock.
          const fresh = (await membersOf(one, ids, copied.vm)).members;
          if (!fresh.every(concluded)) await convertGroup(ctx, template, fresh, copied);
        } finally {
          await lock.release();
        }
        return;
      }
    }
    ctx.signal.throwIfAborted();
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** The template whose DISKs name this image; the export creates it just after the images. */
async function findTemplate(ctx: GroupContext, pollMs: number): Promise<OneTemplate | undefined> {
  const until = Date.now() + (ctx.templateWaitMs ?? 30_000);
  for (;;) {
    const found = (await ctx.one.templates(PoolFilter.ALL)).find((t) => t.template.vectors('DISK').some((d) => d.get('IMAGE_ID') === String(ctx.imageId)));
    if (found || Date.now() >= until) return found;
    ctx.signal.throwIfAborted();
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** The template's images that hold disks of the same source VM, in disk order, and the ids of the deleted ones. */
async function membersOf(one: OneClient, ids: readonly number[], vm: VmDescription): Promise<{ members: Member[]; deleted: number[] }> {
  const deleted: number[] = [];
  const found = await Promise.all(
    ids.map((id) =>
      one.image(id).catch((err: unknown) => {
        if (!(err instanceof OneApiError && err.code === OneErrorCode.NO_EXISTS)) throw err;
        deleted.push(id);
        return undefined;
      }),
    ),
  );
  const images = found.filter((i): i is OneImage => i !== undefined);
  // Every disk app of the VM carries the VM's identity from the catalog, before its copy too.
  const identity = vmIdentity(vm);
  const members = images
    .filter((i) => i.template.get('ONESWAP_SOURCE_VM') === identity)
    .map((image) => ({ image, index: Number(image.template.get('ONESWAP_DISK_INDEX') ?? 0) }))
    .sort((a, b) => a.index - b.index);
  return { members, deleted };
}

async function convertGroup(ctx: GroupContext, template: OneTemplate, members: readonly Member[], copied: CopiedDisk): Promise<void> {
  const { one, log, config } = ctx;
  const vm = copied.vm;
  const ids = members.map((m) => m.image.id);
  const say = (text: string): Promise<void[]> => Promise.all(ids.map((id) => one.imageUpdate(id, Template.of({ ONESWAP_PROGRESS: text }), 'merge').catch(() => undefined)));
  await say('converting the guest (virt-v2v-in-place)');
  const emit = (e: MigrationEvent): void => {
    if (e.type === 'log') log(`INFO: ${e.message}`);
    // The conversion's steps and durations, as oneswap's own log has them.
    const text = e.type === 'conversion' ? describeEvent(e) : undefined;
    if (text !== undefined) log(`INFO: ${text}`);
  };
  try {
    // The images as their datastores keep them (files, qcow2, RBD), from what each cp recorded:
    // oned learns their SOURCE only when the cps answer, after this.
    const targets = await Promise.all(members.map((m) => copiedImageTarget(one, m.image, (line) => log(`WARN: ${line}`))));
    // The catalog's template has no NICs (the user adds them): a single configured interface
    // follows whatever single NIC the VM gets.
    const r = await forQemu(targets, (qemu) => {
      const images = members.map((m, k) => ({ id: m.image.id, image: qemu[k]!, bus: vm.disks[m.index]?.bus ?? 'scsi' }));
      const request = { ...vmConversionRequest(vm, images, { stateDir: config.stateDir, logDir: config.logDir, runId: newRunId() }), network: sourceMacsNetwork(undefined) };
      return convertImages({ one, emit, signal: ctx.signal }, request);
    });
    log(`INFO: ${vm.name}: ${describeConversion(r)}`);
    const guest = r.kind === 'converted' ? r.guest : undefined;
    await rewriteTemplate(one, template, vm, members, guest);
    // convertImages recorded the outcome (CONVERTED, or NOT_CONVERTED for a data-only VM).
    await say(r.kind === 'no-os' ? describeConversion(r) : `converted: ${guest!.productName}`);
  } catch (err) {
    const why = describeError(err);
    log(`WARN: the conversion of ${vm.name} failed: ${why}`);
    const retry = `retry: oneswap convert --image ${ids.join(',')}`;
    await Promise.all(ids.map((id) => one.imageUpdate(id, Template.of({ ONESWAP_CONVERT_ERROR: why, ONESWAP_PROGRESS: `copied; conversion failed (${retry})` }), 'merge').catch(() => undefined)));
    await markTemplate(one, template.id, `not converted: ${why}; ${retry}`);
    if (err instanceof OneswapError && err.kind === 'interrupted') throw err;
  }
}

/** The template the export made from the catalog, rebuilt from the VM and the guest facts. */
async function rewriteTemplate(one: OneClient, template: OneTemplate, vm: VmDescription, members: readonly Member[], guest: ConvertedGuest | undefined): Promise<void> {
  const version = await one.version();
  const rebuilt = buildVmTemplate({
    name: template.name,
    vm,
    disks: members.map((m) => ({ disk: vm.disks[m.index]!, imageId: m.image.id })),
    nics: [],
    guest: guest ?? convertedGuestOf(members[0]!.image),
    oneMajorVersion: Number.parseInt(version, 10) || 7,
    importedAt: new Date(),
  });
  const body = new Template();
  for (const a of rebuilt.attributes) if (a.name !== 'NAME') body.add(a.name, a.value);
  // What the user added to the template since the export (NICs, schedule requirements …) stays.
  for (const a of template.template.attributes) if (!body.attributes.some((b) => b.name === a.name) && a.name !== 'ONESWAP_ERROR') body.add(a.name, a.value);
  await one.templateUpdate(template.id, body, 'replace');
}

async function markTemplate(one: OneClient, id: number, why: string): Promise<void> {
  await one.templateUpdate(id, Template.of({ ONESWAP_ERROR: why }), 'merge').catch(() => undefined);
}

