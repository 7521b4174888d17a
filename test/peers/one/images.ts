/**
 * Images (reference §3, §5, §5.7): one.image.allocate with the three routes
 * (mkfs / PATH → stat + cp / SOURCE), the asynchronous driver callbacks,
 * delete (6.8+ lock rules, DELETE state, rm), info, update, chtype,
 * persistent, chown, rename, and one.imagepool.info.
 */
import { datastoreXml, imageXml, marketXml, poolXml } from './documents.js';
import { availableMb, dsDriver, getDatastore, isPersistentOnly, monitorDatastore } from './datastores.js';
import { ErrorCode, OBJECT_TYPE_STR, RequestError, noExists } from './errors.js';
import { CallContext, IMAGE_RESTRICTED_ATTR, Sim, driverActionData, findRestricted } from './simulator.js';
import { DS_TYPES, IMAGE_STATE, IMAGE_TYPES, ImageRec, defaultPerms } from './state.js';
import { Template, TemplateParseError, parseTemplate } from './template-syntax.js';
import { XrValue, bool, int, str } from './wire.js';
import { escapeXml } from './xml.js';

const STATE_NAMES = Object.fromEntries(Object.entries(IMAGE_STATE).map(([k, v]) => [v, k])) as Record<number, string>;

export function parseOrInternal(src: string): Template {
  try {
    return parseTemplate(src);
  } catch (e) {
    if (e instanceof TemplateParseError) throw new RequestError(ErrorCode.INTERNAL, e.message);
    throw e;
  }
}

export function getImage(sim: Sim, id: number): ImageRec {
  const img = sim.pools.images.get(id);
  if (!img) throw noExists('image', id);
  return img;
}

function typeFromString(s: string): number | undefined {
  const i = (IMAGE_TYPES as readonly string[]).indexOf(s.trim().toUpperCase());
  return i < 0 ? undefined : i;
}

/** Leading-integer parse like `istringstream >> long long`. */
function parseSize(s: string): number | undefined {
  const m = /^\s*([-+]?\d+)/.exec(s);
  return m && m[1] ? Number(m[1]) : undefined;
}

function setError(img: ImageRec, message: string): void {
  img.template.set('ERROR', `${Sim.logTime()} : ${message}`);
  img.prevState = img.state;
  img.state = IMAGE_STATE.ERROR;
}

/** Image::set_state_unlock */
function unlock(img: ImageRec): void {
  img.prevState = img.state;
  switch (img.state) {
    case IMAGE_STATE.LOCKED:
      img.state = IMAGE_STATE.READY;
      break;
    case IMAGE_STATE.LOCKED_USED:
      img.state = IMAGE_STATE.USED;
      break;
    case IMAGE_STATE.LOCKED_USED_PERS:
      img.state = IMAGE_STATE.USED_PERS;
      break;
  }
}

function firstWords(out: string): string[] {
  return out.trim().split(/\s+/).filter((w) => w !== '');
}

// ------------------------------------------------------------------ allocate

/** ImageManager::stat_image: returns [ok, size_str or error text]. */
async function statImage(sim: Sim, tmpl: Template, dsData: string, dsMad: string): Promise<[boolean, string]> {
  const type = typeFromString(tmpl.get('TYPE') ?? 'OS') ?? 0;
  const source = tmpl.get('SOURCE') ?? '';
  const path = tmpl.get('PATH') ?? '';
  const isFile = type === 1 || type === 3 || type === 4 || type === 5; // CDROM KERNEL RAMDISK CONTEXT
  if (type === 6) return [true, tmpl.get('SIZE') ?? ''];
  if (source !== '') return [true, isFile ? '0' : (tmpl.get('SIZE') ?? '')];
  if (path === '') {
    if (isFile) return [false, 'Either SOURCE or PATH attributes must be used'];
    return [true, tmpl.get('SIZE') ?? ''];
  }
  const reqId = sim.statCounter++;
  const payload = driverActionData(
    `<IMAGE><PATH>${escapeXml(path)}</PATH><SIZE>${escapeXml(tmpl.get('SIZE') ?? '')}</SIZE></IMAGE>`,
    dsData,
  );
  const r = await sim.runner.run('stat', dsMad, String(reqId), payload, sim.config.statTimeoutMs);
  if (!r.ok) return [false, r.errorText];
  return [true, r.stdout.trim()];
}

export async function imageAllocate(sim: Sim, call: CallContext, p: XrValue[]): Promise<number> {
  const tmpl = parseOrInternal(str(p, 1));
  const dsId = int(p, 2);
  const skipCapacity = bool(p, 3) && call.isAdmin;

  const ds = getDatastore(sim, dsId);
  if (ds.type === DS_TYPES.SYSTEM_DS || ds.type === DS_TYPES.BACKUP_DS) {
    throw new RequestError(ErrorCode.ALLOCATE, 'New images can only be allocated in a files or image datastore.');
  }
  const { check, avail } = availableMb(sim, ds);
  const dsCheck = check && !skipCapacity;
  const dsData = datastoreXml(sim.pools, ds);

  // ---------------- SIZE: from the marketplace app (FROM_APP, no stat) or the DS driver's stat
  let sizeStr: string;
  let sizeMb: number | undefined;
  let extraData = '';
  const fromApp = templateIntValue(tmpl.get('FROM_APP'));
  if (fromApp !== undefined) {
    const app = sim.pools.marketApps.get(fromApp);
    if (!app) throw new RequestError(ErrorCode.INTERNAL, 'Cannot determine image SIZE.');
    // MarketPlaceApp::to_template
    tmpl.set('FROM_APP_NAME', app.name);
    tmpl.set('PATH', app.source);
    tmpl.set('FORMAT', app.format);
    tmpl.set('FROM_APP_MD5', app.md5);
    const market = sim.pools.markets.get(app.marketId);
    if (!market) throw new RequestError(ErrorCode.INTERNAL, "Could not get the appliance's market.");
    extraData = marketXml(sim.pools, market); // the cp payload gets <MARKETPLACE> after <DATASTORE>
    sizeMb = app.size;
    sizeStr = String(app.size);
    if ((ds.template.get('DRIVER') ?? '') !== '') tmpl.erase('DRIVER');
  } else {
    const [ok, out] = await statImage(sim, tmpl, dsData, ds.dsMad);
    sizeStr = out;
    if (!ok) throw new RequestError(ErrorCode.INTERNAL, `Cannot parse image SIZE: ${sizeStr}`);
    sizeMb = parseSize(sizeStr);
    if (sizeMb === undefined) throw new RequestError(ErrorCode.INTERNAL, `Cannot parse image SIZE: ${sizeStr}`);
  }
  if (dsCheck && sizeMb > avail) throw new RequestError(ErrorCode.ACTION, 'Not enough space in datastore');
  tmpl.erase('SIZE');
  tmpl.add('SIZE', sizeStr);

  if (!call.isAdmin) {
    const r = findRestricted(tmpl, IMAGE_RESTRICTED_ATTR);
    if (r) throw new RequestError(ErrorCode.AUTHORIZATION, `Template includes a restricted attribute ${r}`);
  }
  sim.authorize(call, ds, 'USE', 'datastore');

  const persistentAttr = tmpl.get('PERSISTENT');
  const persistent = persistentAttr !== undefined ? persistentAttr.toUpperCase() === 'YES' : sim.config.defaultImagePersistentNew;
  if (isPersistentOnly(sim, ds) && !persistent) {
    throw new RequestError(ErrorCode.ALLOCATE, 'This Datastore only accepts persistent images.');
  }

  // ---------------- ImagePool::allocate
  const name = tmpl.get('NAME') ?? '';
  const nameErr = Sim.nameError(name);
  if (nameErr) throw new RequestError(ErrorCode.ALLOCATE, nameErr);
  const taken = Sim.nameTaken(sim.pools.images.values(), name, call.uid);
  if (taken) throw new RequestError(ErrorCode.ALLOCATE, `NAME is already taken by ${OBJECT_TYPE_STR.image} ${taken.id}.`);

  // ---------------- Image::insert
  tmpl.erase('NAME');
  const typeAttr = tmpl.erase('TYPE') ?? 'OS';
  const type = typeFromString(typeAttr);
  if (type === undefined) throw new RequestError(ErrorCode.ALLOCATE, `Unknown type: ${typeAttr}`);
  if (ds.type === DS_TYPES.FILE_DS && type !== 3 && type !== 4 && type !== 5) {
    throw new RequestError(ErrorCode.ALLOCATE, 'Only images of type KERNEL, RAMDISK and CONTEXT can be registered in a FILE_DS datastore');
  }
  if (ds.type === DS_TYPES.IMAGE_DS && (type === 3 || type === 4 || type === 5)) {
    throw new RequestError(ErrorCode.ALLOCATE, 'Images of type KERNEL, RAMDISK and CONTEXT cannot be registered in an IMAGE_DS datastore');
  }
  tmpl.erase('PERSISTENT');
  let isPersistent = persistent;
  if (type === 0 || type === 1 || type === 2 || type === 7) {
    if (tmpl.get('DEV_PREFIX') === undefined) tmpl.add('DEV_PREFIX', type === 1 ? 'hd' : 'sd');
  } else {
    isPersistent = type === 6;
    tmpl.erase('DEV_PREFIX');
  }
  tmpl.erase('SIZE');
  const fs = tmpl.erase('FS') ?? '';
  tmpl.erase('DRIVER');
  const path = tmpl.erase('PATH') ?? '';
  const source = tmpl.erase('SOURCE') ?? '';
  let format = tmpl.erase('FORMAT') ?? '';
  tmpl.erase('TM_MAD');
  if (source !== '') {
    if (path !== '') throw new RequestError(ErrorCode.ALLOCATE, 'PATH and SOURCE cannot be both set.');
    if (format === '') throw new RequestError(ErrorCode.ALLOCATE, 'SOURCE needs FORMAT to be set.');
  } else if (type === 6) {
    throw new RequestError(ErrorCode.ALLOCATE, 'SOURCE cannot be empty for BACKUP images');
  } else if (path !== '') {
    format = '';
  } else if (type === 2 || type === 0 || type === 7) {
    const drv = dsDriver(ds);
    if (drv !== '') {
      tmpl.set('DRIVER', drv);
      format = drv;
    } else if (format === '') format = 'raw';
  } else {
    throw new RequestError(ErrorCode.ALLOCATE, 'No PATH nor SOURCE in template.');
  }

  const id = sim.pools.next.image++;
  const img: ImageRec = {
    id,
    uid: call.uid,
    gid: call.gid,
    name,
    perms: defaultPerms(),
    type,
    diskType: type === 1 ? (CDROM_DISK_TYPE[ds.diskType] ?? ds.diskType) : ds.diskType,
    persistent: isPersistent,
    regtime: Sim.now(),
    source,
    path,
    format,
    fs,
    size: sizeMb,
    state: IMAGE_STATE.LOCKED,
    prevState: IMAGE_STATE.INIT,
    runningVms: 0,
    cloningOps: 0,
    cloningId: -1,
    targetSnapshot: -1,
    dsId,
    dsName: ds.name,
    vms: [],
    clones: [],
    appClones: [],
    template: tmpl,
  };
  sim.pools.images.set(id, img);
  ds.images.push(id);
  registerImage(sim, img, dsData, extraData);
  return id;
}

/** ImageAllocate: a CDROM gets the CDROM flavour of its datastore's DISK_TYPE (FILE→CDROM, RBD→RBD_CDROM, …). */
const CDROM_DISK_TYPE: Record<number, number> = { 0: 1, 3: 4, 5: 6, 7: 8 };

/** Template::get(name, int&): the whole value must be an integer. */
function templateIntValue(v: string | undefined): number | undefined {
  if (v === undefined || !/^\s*[-+]?\d+$/.test(v)) return undefined;
  return Number(v.trim());
}

/** ImageManager::register_image (extraData: e.g. the <MARKETPLACE> of FROM_APP) */
function registerImage(sim: Sim, img: ImageRec, dsData: string, extraData = ''): void {
  const ds = sim.pools.datastores.get(img.dsId);
  const dsMad = ds?.dsMad ?? '';
  const payload = driverActionData(imageXml(sim.pools, img), dsData, extraData);
  const id = img.id;
  if (img.path === '') {
    if (img.source === '') {
      sim.later(async () => {
        const r = await sim.runner.run('mkfs', dsMad, String(id), payload);
        const cur = sim.pools.images.get(id);
        if (!cur) return;
        if (r.ok) {
          const [src] = firstWords(r.stdout);
          if (!src) {
            setError(cur, 'Error creating datablock: MKFS operation succeeded but image SOURCE was not returned.');
            return;
          }
          cur.source = src;
          unlock(cur);
        } else {
          setError(cur, r.errorText && !r.errorText.startsWith('-') ? `Error creating datablock: ${r.errorText}` : 'Error creating datablock');
        }
        // ImageManager::_mkfs monitors the datastore after a success and after a failure alike
        await monitorDatastore(sim, cur.dsId);
      });
    } else {
      img.prevState = img.state;
      img.state = IMAGE_STATE.READY;
    }
  } else {
    sim.later(async () => {
      const r = await sim.runner.run('cp', dsMad, String(id), payload);
      const cur = sim.pools.images.get(id);
      if (cur) {
        if (r.ok) {
          const [src, fmt] = firstWords(r.stdout);
          if (!src) {
            setError(cur, 'CP operation succeeded but image SOURCE was not returned.');
          } else {
            cur.source = src;
            if (!fmt) setError(cur, 'CP operation succeeded but image FORMAT was not returned.');
            else {
              cur.format = fmt;
              unlock(cur);
            }
          }
        } else {
          setError(cur, r.errorText ? `Error copying image in the datastore: ${r.errorText}` : 'Error copying image in the datastore');
        }
      }
      await monitorDatastore(sim, img.dsId);
    });
  }
}

// ------------------------------------------------------------------ info / pool

export function imageInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  const img = getImage(sim, int(p, 1));
  sim.authorize(call, img, 'USE', 'image');
  return imageXml(sim.pools, img);
}

export function imagePoolInfo(sim: Sim, call: CallContext, p: XrValue[]): string {
  const list = sim.filterPool(call, sim.pools.images.values(), int(p, 1), int(p, 2), int(p, 3));
  return poolXml('IMAGE_POOL', list.map((i) => imageXml(sim.pools, i)));
}

// ------------------------------------------------------------------ delete

export function imageDelete(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const force = bool(p, 2);
  const img = getImage(sim, id);
  sim.authorize(call, img, 'MANAGE', 'image');
  if (img.lock) throw new RequestError(ErrorCode.LOCKED, '', id);
  deleteImage(sim, img, force);
  return id;
}

/** ImageDelete request + ImageManager::delete_image */
export function deleteImage(sim: Sim, img: ImageRec, force: boolean): void {
  const id = img.id;
  const s = img.state;
  if (!force && (s === IMAGE_STATE.LOCKED || s === IMAGE_STATE.LOCKED_USED || s === IMAGE_STATE.LOCKED_USED_PERS)) {
    throw new RequestError(
      ErrorCode.INTERNAL,
      'Image locked, use --force flag to remove the image. Force delete may leave some files on Datastore',
      id,
    );
  }
  const cannot = (why: string): never => {
    throw new RequestError(ErrorCode.ACTION, `Cannot delete image. ${why}`, id);
  };
  switch (s) {
    case IMAGE_STATE.READY:
      if (img.runningVms !== 0) cannot(`There are ${img.runningVms} VMs using it.`);
      break;
    case IMAGE_STATE.USED:
    case IMAGE_STATE.USED_PERS:
    case IMAGE_STATE.LOCKED_USED:
    case IMAGE_STATE.LOCKED_USED_PERS:
      cannot(`There are ${img.runningVms} VMs using it.`);
      break;
    case IMAGE_STATE.CLONE:
      cannot(`There are ${img.cloningOps} active clone operations.`);
      break;
  }
  const ds = sim.pools.datastores.get(img.dsId);
  if (img.source === '') {
    dropImage(sim, img);
    return;
  }
  const dsData = ds ? datastoreXml(sim.pools, ds) : '';
  // a forced delete goes through even when rm fails (ImageManager::_rm reads FORCE_DELETE)
  if (force) img.template.set('FORCE_DELETE', 'YES');
  img.prevState = img.state;
  img.state = IMAGE_STATE.DELETE;
  const payload = driverActionData(imageXml(sim.pools, img), dsData);
  sim.later(async () => {
    const r = await sim.runner.run('rm', ds?.dsMad ?? '', String(id), payload);
    const cur = sim.pools.images.get(id);
    if (!cur) return;
    if (r.ok || (cur.template.get('FORCE_DELETE') ?? '').toUpperCase() === 'YES') {
      dropImage(sim, cur);
      await monitorDatastore(sim, cur.dsId);
    } else {
      // 7.4 prints an empty source here (the variable is read after the message is built) and
      // keeps the driver's text for oned.log only (reference §5.8)
      setError(
        cur,
        'Error removing image from datastore. Retry the operation or manually remove image source  and run the delete --force operation to completely delete the image',
      );
      sim.runner.onedLog.push(`[ImM][E]: Error removing image ${id} from datastore: ${r.errorText || '-'}`);
    }
  });
}

function dropImage(sim: Sim, img: ImageRec): void {
  sim.pools.images.delete(img.id);
  const ds = sim.pools.datastores.get(img.dsId);
  if (ds) ds.images = ds.images.filter((i) => i !== img.id);
}

// ------------------------------------------------------------------ update & friends

export function imageUpdate(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const img = getImage(sim, id);
  sim.authorize(call, img, 'MANAGE', 'image');
  const t = parseOrInternal(str(p, 2));
  if (!call.isAdmin) {
    const r = findRestricted(t, IMAGE_RESTRICTED_ATTR);
    if (r && t.get(r) !== img.template.get(r)) {
      throw new RequestError(ErrorCode.AUTHORIZATION, `Template includes a restricted attribute ${r}`, id);
    }
  }
  if (int(p, 3) === 1) img.template.merge(t);
  else img.template = t;
  return id;
}

export function imageChtype(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const img = getImage(sim, id);
  sim.authorize(call, img, 'MANAGE', 'image');
  const tname = str(p, 2);
  const t = typeFromString(tname);
  if (t === undefined) throw new RequestError(ErrorCode.ACTION, `Unknown type: ${tname}`, id);
  const g1 = [0, 1, 2];
  const g2 = [3, 4, 5];
  const ok = (g1.includes(img.type) && g1.includes(t)) || (g2.includes(img.type) && g2.includes(t)) || t === img.type;
  if (!ok) {
    throw new RequestError(
      ErrorCode.ACTION,
      g1.includes(img.type)
        ? 'IMAGE of type OS, DATABLOCK or CDROM can only be changed to one of those types'
        : 'IMAGE of type KERNEL, RAMDISK or CONTEXT can only be changed to one of those types',
      id,
    );
  }
  img.type = t;
  return id;
}

export function imagePersistent(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const persistent = bool(p, 2);
  const img = getImage(sim, id);
  sim.authorize(call, img, 'MANAGE', 'image');
  const busy: number[] = [IMAGE_STATE.USED, IMAGE_STATE.CLONE, IMAGE_STATE.USED_PERS, IMAGE_STATE.LOCKED_USED, IMAGE_STATE.LOCKED_USED_PERS];
  if (busy.includes(img.state)) {
    throw new RequestError(ErrorCode.ACTION, `Cannot change the persistent attribute of an image in state ${STATE_NAMES[img.state]}.`, id);
  }
  if ([3, 4, 5].includes(img.type) && persistent) {
    throw new RequestError(ErrorCode.ACTION, 'KERNEL, RAMDISK and CONTEXT files must be non-persistent', id);
  }
  const ds = sim.pools.datastores.get(img.dsId);
  if (!persistent && ds && isPersistentOnly(sim, ds)) {
    throw new RequestError(ErrorCode.ACTION, 'This Datastore only accepts persistent images.', id);
  }
  img.persistent = persistent;
  return id;
}

export function imageRename(sim: Sim, call: CallContext, p: XrValue[]): number {
  const id = int(p, 1);
  const name = str(p, 2);
  const img = getImage(sim, id);
  sim.authorize(call, img, 'MANAGE', 'image');
  const err = Sim.nameError(name);
  if (err) throw new RequestError(ErrorCode.ACTION, err, id);
  const taken = Sim.nameTaken(sim.pools.images.values(), name, img.uid, id);
  if (taken) throw new RequestError(ErrorCode.ACTION, `NAME is already taken by ${OBJECT_TYPE_STR.image} ${taken.id}.`, id);
  img.name = name;
  return id;
}
