/**
 * VM templates: one.template.allocate / info (extended) / update / delete
 * (recursive) / instantiate / rename, one.templatepool.info.
 */
import { poolXml, vmTemplateXml } from './documents.js';
import { ErrorCode, OBJECT_TYPE_STR, RequestError, noExists } from './errors.js';
import { deleteImage, parseOrInternal } from './images.js';
import { CallContext, Sim, VM_RESTRICTED_ATTR } from './simulator.js';
import { VmTemplateRec, defaultPerms } from './state.js';
import { Template } from './template-syntax.js';
import { buildVm, imageDiskAttributes } from './vm-build.js';
import { XrValue, bool, int, str } from './wire.js';

export function getTemplate(sim: Sim, id: number): VmTemplateRec {
  const t = sim.pools.templates.get(id);
  if (!t) throw noExists('template', id);
  return t;
}

/** Restricted attributes a non-admin adds or changes (compared with `original`). */
export function checkVmRestricted(call: CallContext, t: Template, original?: Template, respId = -1): void {
  if (call.isAdmin) return;
  for (const r of VM_RESTRICTED_ATTR) {
    const [a, b] = r.split('/') as [string, string | undefined];
    if (b === undefined) {
      const v = t.get(a);
      if (v !== undefined && (!original || original.get(a) !== v)) throw restricted(r, respId);
      if (v === undefined && t.has(a) && !(original?.has(a) ?? false)) throw restricted(r, respId);
    } else {
      const origVals = new Set((original?.vectors(a) ?? []).map((m) => m.get(b)).filter((x) => x !== undefined));
      for (const m of t.vectors(a)) {
        const v = m.get(b);
        if (v !== undefined && !origVals.has(v)) throw restricted(r, respId);
      }
    }
  }
}

function restricted(name: string, respId: number): RequestError {
  return new RequestError(ErrorCode.AUTHORIZATION, `VM Template includes a restricted attribute ${name}`, respId);
}

export function templateAllocate(sim: Sim, call: CallContext, p: XrValue[]): number {
  const t = parseOrInternal(str(p, 1));
  checkVmRestricted(call, t);
  const name = t.erase('NAME') ?? '';
  const err = Sim.nameError(name);
  if (err) throw new RequestError(ErrorCode.ALLOCATE, err);
  const taken = Sim.nameTaken(sim.pools.templates.values(), name, call.uid);
  if (taken) throw new RequestError(ErrorCode.ALLOCATE, `NAME is already taken by ${OBJECT_TYPE_STR.template} ${taken.id}.`);
  const id = sim.pools.next.template++;
  sim.pools.templates.set(id, { id, uid: call.uid, gid: call.gid, name, perms: defaultPerms(), regtime: Sim.now(), template: t });
  return id;
}

/** extended=true: DISKs get the image attributes (as instantiate would). */
function extendedTemplate(sim: Sim, t: Template): Template {
  const out = t.clone();
  out.attrs = out.attrs.map((a) => {
    if (a.name !== 'DISK' || !a.vector) return a;
    const idStr = a.vector.get('IMAGE_ID');
    let img = idStr !== undefined ? sim.pools.images.get(Number(idStr)) : undefined;
    if (!img && a.vector.get('IMAGE') !== undefined) {
      img = [...sim.pools.images.values()].find((i) => i.name === a.vector?.get('IMAGE'));
    }
    return img ? { name: 'DISK', vector: imageDiskAttributes(sim, img, a.vector) } : a;
  });
  return out;
}

export function templateInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  const t = getTemplate(sim, int(p, 1));
  sim.authorize(call, t, 'USE', 'template');
  return vmTemplateXml(sim.pools, t, bool(p, 2) ? extendedTemplate(sim, t.template) : t.template);
}

export function templatePoolInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  const list = sim.filterPool(call, sim.pools.templates.values(), int(p, 1), int(p, 2), int(p, 3));
  return poolXml('VMTEMPLATE_POOL', list.map((t) => vmTemplateXml(sim.pools, t)));
}

export function templateUpdate(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const t = getTemplate(sim, id);
  sim.authorize(call, t, 'MANAGE', 'template');
  const nt = parseOrInternal(str(p, 2));
  checkVmRestricted(call, nt, t.template, id);
  if (int(p, 3) === 1) t.template.merge(nt);
  else t.template = nt;
  return id;
}

export function templateRename(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const name = str(p, 2);
  const t = getTemplate(sim, id);
  sim.authorize(call, t, 'MANAGE', 'template');
  const err = Sim.nameError(name);
  if (err) throw new RequestError(ErrorCode.ACTION, err, id);
  const taken = Sim.nameTaken(sim.pools.templates.values(), name, t.uid, id);
  if (taken) throw new RequestError(ErrorCode.ACTION, `NAME is already taken by ${OBJECT_TYPE_STR.template} ${taken.id}.`, id);
  t.name = name;
  return id;
}

export function templateDelete(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const recursive = bool(p, 2);
  const t = getTemplate(sim, id);
  sim.authorize(call, t, 'MANAGE', 'template');
  if (t.lock) throw new RequestError(ErrorCode.LOCKED, '', id);
  sim.pools.templates.delete(id);
  if (recursive) {
    const errors: string[] = [];
    for (const d of t.template.vectors('DISK')) {
      const iid = d.get('IMAGE_ID');
      const img = iid !== undefined ? sim.pools.images.get(Number(iid)) : undefined;
      if (!img) continue;
      try {
        sim.authorize(call, img, 'MANAGE', 'image');
        deleteImage(sim, img, false);
      } catch (e) {
        errors.push(`Cannot delete image ${img.id}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    if (errors.length > 0) throw new RequestError(ErrorCode.ACTION, `Cannot delete virtual machine template. ${errors.join(' ')}`, id);
  }
  return id;
}

export function templateInstantiate(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const vmName = str(p, 2);
  const hold = bool(p, 3);
  const extra = str(p, 4);
  const persistentCopy = bool(p, 5);
  const t = getTemplate(sim, id);
  sim.authorize(call, t, 'USE', 'template');
  if (persistentCopy) {
    throw new RequestError(ErrorCode.INTERNAL, 'Persistent instantiation (template and image cloning) is not simulated', id);
  }
  const merged = t.template.clone();
  if (extra.trim() !== '') {
    const x = parseOrInternal(extra);
    checkVmRestricted(call, x, t.template, id);
    merged.merge(x);
  }
  const name = vmName !== '' ? vmName : `${t.name}-${sim.pools.next.vm}`;
  return buildVm(sim, call, merged, { name, hold, templateId: id });
}
