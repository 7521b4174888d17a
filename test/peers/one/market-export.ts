/**
 * The stock marketplace-app export as a client, over XML-RPC: what
 * `onemarketapp export APP NAME -d DS` and Sunstone's "Import" run — OCA's
 * `OpenNebula::MarketPlaceAppExt#export` (src/oca/ruby/opennebula/marketplaceapp_ext.rb),
 * reference §7.2/7.3. It is Ruby client code in OpenNebula, not an oned method,
 * so it lives here as a function that talks to any endpoint (the simulator or a
 * real oned) with the same calls, in the same order, with the same arguments:
 *
 * IMAGE app:       one.marketapp.info → [one.datastorepool.info for KERNEL/CONTEXT] →
 *                  one.datastore.info → one.image.allocate(APPTEMPLATE64 + NAME + FROM_APP, ds, false) →
 *                  one.image.info → one.image.update(TEMPLATE without FORMAT/DRIVER, 0) →
 *                  [one.template.allocate(VMTEMPLATE64 + NAME + DISK=[IMAGE_ID]) unless notemplate]
 * VMTEMPLATE app:  one.marketapp.info → one.marketapppool.info(-2,-1,-1) → per top-level
 *                  DISK=[NAME,APP]: one.imagepool.info(-1,-1,-1) + the IMAGE export above of the
 *                  app named APP (notemplate) → one.datastore.info → one.template.allocate(APPTEMPLATE64 +
 *                  NAME) → one.template.info → one.template.update(+ DISK=[IMAGE_ID] per disk, 0).
 *                  On an error after images were created, OCA "rolls back" with one.image.delete(id, false),
 *                  which oned refuses while the images are still LOCKED; nothing else is undone.
 *
 * Not simulated (they need OneFlow, vCenter or local files): SERVICE_TEMPLATE apps, the
 * vCenter datastore branch (DRIVER=vcenter) and the `template` (clone an existing VM template) option.
 */
import { IMAGE_TYPES } from './state.js';
import { XmlElement, XmlNode, elementChildren, escapeText, parseXml, pathText, textOf } from './xml.js';

/** OpenNebula::Error: the failure text oned answered (`[one.x.y] …`) and its code, or OCA's own message. */
export class OcaError extends Error {
  /** in an export result: the rc_info array this error stood in */
  field?: 'image' | 'vmtemplate' | 'serviceTemplate';

  constructor(
    message: string,
    readonly errno?: number,
  ) {
    super(message);
    this.name = 'OcaError';
  }
}

export interface ExportMarketAppOptions {
  /** XML-RPC endpoint, e.g. oned.endpoint */
  endpoint: string;
  /** `user:password` or `user:token` */
  session: string;
  appId: number;
  /** options[:name]: name of the image (IMAGE app) or of the VM template (VMTEMPLATE app) */
  name: string;
  /** options[:dsid] */
  datastoreId: number;
  /** options[:vmtemplate_name]: VM template name for an IMAGE app with VMTEMPLATE64 */
  templateName?: string;
  /** options[:f_dsid]: files datastore for KERNEL/CONTEXT images (else the first FILE_DS) */
  fileDatastoreId?: number;
  /** options[:notemplate]: IMAGE app only, skip its VMTEMPLATE64 */
  notemplate?: boolean;
  /** per-call timeout, default 60 s */
  timeoutMs?: number;
}

/**
 * OCA's rc_info. OCA puts an OpenNebula::Error in place of an id when that object could not
 * be created; here the arrays hold only ids and those errors are listed in `errors`, each
 * tagged with the array it stood in (`error.field`).
 */
export interface ExportMarketAppResult {
  image: number[];
  /** image type of an IMAGE app export (OS, DATABLOCK, …), null otherwise */
  imageType: string | null;
  vmtemplate: number[];
  serviceTemplate: number[];
  errors: OcaError[];
}

/** rc_info as OCA builds it */
interface RcInfo {
  image: (number | OcaError)[];
  imageType: string | null;
  vmtemplate: (number | OcaError)[];
  serviceTemplate: (number | OcaError)[];
}

const APP_STATES = ['INIT', 'READY', 'LOCKED', 'ERROR', 'DISABLED'];
const APP_TYPES = ['UNKNOWN', 'IMAGE', 'VMTEMPLATE', 'SERVICE_TEMPLATE'];

// ------------------------------------------------------------------ a minimal XML-RPC client (OCA::Client#call)

type Arg = string | number | boolean;
type Val = string | number | boolean | Val[];

function argXml(a: Arg): string {
  if (typeof a === 'number') return `<value><i4>${a}</i4></value>`;
  if (typeof a === 'boolean') return `<value><boolean>${a ? 1 : 0}</boolean></value>`;
  return `<value><string>${escapeText(a)}</string></value>`;
}

function decodeValue(el: XmlElement): Val {
  const typed = elementChildren(el)[0];
  if (!typed) return textOf(el);
  const t = textOf(typed);
  switch (typed.name) {
    case 'int':
    case 'i4':
    case 'i8':
    case 'double':
      return Number(t.trim());
    case 'boolean':
      return t.trim() === '1';
    case 'array': {
      const data = elementChildren(typed).find((c) => c.name === 'data');
      return data ? elementChildren(data).map(decodeValue) : [];
    }
    default:
      return t;
  }
}

class Client {
  constructor(
    private readonly endpoint: string,
    private readonly session: string,
    private readonly timeoutMs: number,
  ) {}

  /** The value of a successful call, or an OcaError (oned's failure text, a fault, a transport error). */
  async call(method: string, ...args: Arg[]): Promise<Val | OcaError> {
    const body =
      `<?xml version="1.0"?>\n<methodCall><methodName>${method}</methodName><params>` +
      [this.session, ...args].map((a) => `<param>${argXml(a)}</param>`).join('') +
      '</params></methodCall>';
    let text: string;
    try {
      const r = await fetch(this.endpoint, {
        method: 'POST',
        body,
        headers: { 'Content-Type': 'text/xml' },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await r.text();
      if (!r.ok) return new OcaError(`HTTP ${r.status}: ${text}`);
    } catch (e) {
      return new OcaError(e instanceof Error ? e.message : String(e));
    }
    let root: XmlElement;
    try {
      root = parseXml(text);
    } catch (e) {
      return new OcaError(`bad XML-RPC response: ${e instanceof Error ? e.message : String(e)}`);
    }
    const fault = elementChildren(root).find((c) => c.name === 'fault');
    if (fault) {
      const v = elementChildren(fault)[0];
      const members = v ? elementChildren(elementChildren(v)[0] ?? v).filter((m) => m.name === 'member') : [];
      const get = (n: string): Val | undefined => {
        const m = members.find((x) => pathText(x, 'name') === n);
        const mv = m ? elementChildren(m).find((c) => c.name === 'value') : undefined;
        return mv ? decodeValue(mv) : undefined;
      };
      return new OcaError(String(get('faultString') ?? 'XML-RPC fault'), Number(get('faultCode') ?? -1));
    }
    const valueEl = elementChildren(elementChildren(elementChildren(root).find((c) => c.name === 'params') ?? root)[0] ?? root).find((c) => c.name === 'value');
    const v = valueEl ? decodeValue(valueEl) : undefined;
    if (!Array.isArray(v)) return new OcaError(`unexpected XML-RPC response: ${text}`);
    if (v[0] === true) return v[1] ?? '';
    return new OcaError(String(v[1] ?? ''), typeof v[2] === 'number' ? v[2] : undefined);
  }
}

// ------------------------------------------------------------------ XML helpers (OCA XMLElement)

function doc(xml: Val): XmlElement {
  return parseXml(String(xml));
}

/** XMLElement#[]: the text of the first element at `path`, undefined when absent. */
function at(el: XmlElement, p: string): string | undefined {
  return pathText(el, p);
}

/** `//NAME` below (and including) el, document order. */
function descendants(el: XmlElement, name: string): XmlElement[] {
  const out: XmlElement[] = [];
  const walk = (e: XmlElement): void => {
    if (e.name === name) out.push(e);
    for (const c of elementChildren(e)) walk(c);
  };
  walk(el);
  return out;
}

function serialize(n: XmlNode): string {
  if (typeof n === 'string') return escapeText(n);
  return `<${n.name}>${n.children.map(serialize).join('')}</${n.name}>`;
}

/** XMLElement#delete_element for `TEMPLATE/NAME` */
function deleteTemplateElement(root: XmlElement, name: string): void {
  const t = elementChildren(root).find((c) => c.name === 'TEMPLATE');
  if (t) t.children = t.children.filter((c) => typeof c === 'string' || c.name !== name);
}

/** XMLElement#template_xml */
function templateXml(root: XmlElement): string {
  const t = elementChildren(root).find((c) => c.name === 'TEMPLATE');
  return t ? serialize(t) : '';
}

/** XMLElement#add_element(xpath, { NAME => { CHILD => value } }) on `TEMPLATE[/sub]` */
function addElement(root: XmlElement, parentPath: string, name: string, children: Record<string, string> | string): void {
  let parent: XmlElement | undefined = root;
  for (const part of parentPath.split('/')) parent = parent ? elementChildren(parent).find((c) => c.name === part) : undefined;
  if (!parent) return;
  const el: XmlElement = { name, children: [] };
  if (typeof children === 'string') el.children.push(children);
  else for (const [k, v] of Object.entries(children)) el.children.push({ name: k, children: [v] });
  parent.children.push(el);
}

const b64decode = (s: string): string => Buffer.from(s, 'base64').toString('utf8');
/** Ruby's Array#to_s as string interpolation shows it: `[5]` */
const rubyArray = (a: (number | OcaError)[]): string => `[${a.map((x) => (x instanceof OcaError ? `#<OpenNebula::Error:${x.message}>` : String(x))).join(', ')}]`;

// ------------------------------------------------------------------ the export

interface Opts {
  dsid: number;
  name: string;
  vmtemplateName?: string;
  fDsid?: number;
  notemplate?: boolean;
}

/**
 * `onemarketapp export <appId> <name> -d <datastoreId>`: OCA's MarketPlaceAppExt#export.
 * Errors OCA returns instead of the result hash (app missing or not READY, unsupported type)
 * are thrown as OcaError; errors of single objects are in `errors` (see ExportMarketAppResult).
 */
export async function exportMarketApp(o: ExportMarketAppOptions): Promise<ExportMarketAppResult> {
  const client = new Client(o.endpoint, o.session, o.timeoutMs ?? 60_000);
  const r = await exportApp(client, o.appId, {
    dsid: o.datastoreId,
    name: o.name,
    ...(o.templateName !== undefined ? { vmtemplateName: o.templateName } : {}),
    ...(o.fileDatastoreId !== undefined ? { fDsid: o.fileDatastoreId } : {}),
    ...(o.notemplate !== undefined ? { notemplate: o.notemplate } : {}),
  });
  if (r instanceof OcaError) throw r;
  const out: ExportMarketAppResult = { image: [], imageType: r.imageType, vmtemplate: [], serviceTemplate: [], errors: [] };
  for (const field of ['image', 'vmtemplate', 'serviceTemplate'] as const) {
    for (const x of r[field]) {
      if (x instanceof OcaError) {
        x.field = field;
        out.errors.push(x);
      } else out[field].push(x);
    }
  }
  return out;
}

async function exportApp(client: Client, appId: number, options: Opts): Promise<RcInfo | OcaError> {
  const info = await client.call('one.marketapp.info', appId, false);
  if (info instanceof OcaError) return info;
  const app = doc(info);
  if (APP_STATES[Number(at(app, 'STATE'))] !== 'READY') return new OcaError('App is not READY');
  const type = APP_TYPES[Number(at(app, 'TYPE'))];
  switch (type) {
    case 'IMAGE':
      return exportImage(client, app, options);
    case 'VMTEMPLATE':
      return exportVmTemplate(client, app, { ...options, notemplate: true });
    case 'SERVICE_TEMPLATE':
      return new OcaError('SERVICE_TEMPLATE apps (OneFlow) are not simulated');
    default:
      return new OcaError(`App type ${type ?? ''} not supported`);
  }
}

async function exportImage(client: Client, app: XmlElement, options: Opts): Promise<RcInfo> {
  const rc: RcInfo = { image: [], imageType: null, vmtemplate: [], serviceTemplate: [] };
  const appId = at(app, 'ID') ?? '';
  let tmpl = '';
  const t64 = at(app, 'APPTEMPLATE64');
  if (t64 !== undefined) tmpl = b64decode(t64);
  tmpl += `                NAME     = "${options.name}"\n                FROM_APP = "${appId}"\n`;

  // kernel or context images go to a files datastore
  let dsid = options.dsid;
  if (/^\s*TYPE\s*=\s*KERNEL|CONTEXT\s/im.test(tmpl)) {
    if (options.fDsid !== undefined) dsid = options.fDsid;
    else {
      const pool = await client.call('one.datastorepool.info');
      if (pool instanceof OcaError) return { ...rc, image: [pool] };
      const fileDs = elementChildren(doc(pool)).filter((d) => Number(at(d, 'TYPE')) === 2);
      const first = fileDs[0];
      if (!first) throw new OcaError("undefined method `[]' for nil (no FILE_DS datastore)");
      dsid = Number(at(first, 'ID'));
    }
  }

  const ds = await client.call('one.datastore.info', dsid, false);
  const isVcenter = !(ds instanceof OcaError) && at(doc(ds), 'TEMPLATE/DRIVER') === 'vcenter';

  const imageId = await client.call('one.image.allocate', tmpl, dsid, false);
  if (imageId instanceof OcaError) return { ...rc, image: [imageId] };
  const id = Number(imageId);

  const imgInfo = await client.call('one.image.info', id, false);
  const img = imgInfo instanceof OcaError ? { name: 'IMAGE', children: [] } : doc(imgInfo);
  deleteTemplateElement(img, 'FORMAT');
  deleteTemplateElement(img, 'DRIVER');
  if (isVcenter) deleteTemplateElement(img, 'DEV_PREFIX');
  await client.call('one.image.update', id, templateXml(img), 0);

  rc.image = [id];
  rc.imageType = IMAGE_TYPES[Number(at(img, 'TYPE'))] ?? null;

  if (isVcenter && !options.notemplate) throw new OcaError('vCenter VM templates (create_vcenter_template) are not simulated');
  const vm64 = at(app, 'TEMPLATE/VMTEMPLATE64');
  if (vm64 === undefined || options.notemplate) return rc;

  const vmtmpl =
    b64decode(vm64) +
    `\n                    NAME = "${options.vmtemplateName ?? options.name}"\n                    DISK = [ IMAGE_ID = "${id}" ]\n`;
  const tid = await client.call('one.template.allocate', vmtmpl);
  rc.vmtemplate = [tid instanceof OcaError ? tid : Number(tid)];
  return rc;
}

interface Exported {
  rc: RcInfo;
  names: (string | undefined)[];
}

async function exportVmTemplate(client: Client, app: XmlElement, options: Opts): Promise<RcInfo> {
  const rc: RcInfo = { image: [], imageType: null, vmtemplate: [], serviceTemplate: [] };
  const [res, images, templates] = await exportRecursive(client, app, options);
  rc.vmtemplate = [res];
  if (!(res instanceof OcaError)) {
    rc.image.push(...images);
    if (!options.notemplate) rc.vmtemplate.push(...templates.filter((t): t is number => t !== undefined));
  }
  return rc;
}

/** export_recursive('//DISK'): one image per distinct disk app, then the VM template. */
async function exportRecursive(client: Client, app: XmlElement, options: Opts): Promise<[number | OcaError, number[], (number | undefined)[]]> {
  const poolXml = await client.call('one.marketapppool.info', -2, -1, -1);
  if (poolXml instanceof OcaError) return [poolXml, [], []];
  const pool = elementChildren(doc(poolXml));

  const exported = new Map<string | undefined, Exported>();
  let idx = 0;
  const images: number[] = [];
  const templates: (number | undefined)[] = [];
  let err: OcaError | undefined;

  for (const disk of descendants(app, 'DISK')) {
    const objName = at(disk, 'NAME');
    const appName = at(disk, 'APP');
    const seen = exported.get(appName);
    if (seen) {
      seen.names.push(objName);
      continue;
    }
    const obj = pool.find((p) => at(p, 'NAME') === appName);
    if (!obj) {
      err = new OcaError(`App \`${appName ?? ''}\` not found`);
      break;
    }
    // fix the name if an image with it exists
    const imgPool = await client.call('one.imagepool.info', -1, -1, -1);
    if (imgPool instanceof OcaError) {
      err = imgPool;
      break;
    }
    const imgNames = elementChildren(doc(imgPool)).map((i) => at(i, 'NAME'));
    let optName = options.name;
    const short = `${optName}-${objName ?? ''}-${idx}`;
    if (imgNames.includes(short)) {
      let idy = 0;
      while (imgNames.includes(`${optName}_${idy}-${objName ?? ''}-${idx}`)) idy++;
      optName = `${optName}_${idy}`;
    }
    const r = await exportApp(client, Number(at(obj, 'ID')), {
      dsid: options.dsid,
      name: `${optName}-${objName ?? ''}-${idx}`,
      ...(options.notemplate !== undefined ? { notemplate: options.notemplate } : {}),
    });
    // OCA indexes the result as a hash; an Error here (disk app not READY, …) makes Ruby raise
    if (r instanceof OcaError) throw r;
    const image = r.image[0];
    if (image instanceof OcaError) {
      err = image;
      break;
    }
    const vmtemplate = r.vmtemplate[0];
    if (vmtemplate instanceof OcaError) {
      err = vmtemplate;
      break;
    }
    idx++;
    exported.set(appName, { rc: r, names: [objName] });
    if (image !== undefined) images.push(image);
    templates.push(vmtemplate);
  }

  const res: number | OcaError = err ?? (await createVmTemplate(client, app, options, exported));
  if (res instanceof OcaError) {
    // rollback_export: delete the images (result ignored; oned refuses LOCKED images without force)
    for (const v of exported.values()) {
      const id = v.rc.image[0];
      if (typeof id === 'number') await client.call('one.image.delete', id, false);
    }
  }
  return [res, images, templates];
}

/** create_vm_template: APPTEMPLATE64 + NAME, then DISK=[IMAGE_ID] per exported disk app. */
async function createVmTemplate(client: Client, app: XmlElement, options: Opts, disks: Map<string | undefined, Exported>): Promise<number | OcaError> {
  const ds = await client.call('one.datastore.info', options.dsid, false);
  const isVcenter = !(ds instanceof OcaError) && at(doc(ds), 'TEMPLATE/DRIVER') === 'vcenter';
  if (isVcenter) throw new OcaError('vCenter VM templates (create_vcenter_template) are not simulated');

  const t64 = at(app, 'TEMPLATE/APPTEMPLATE64');
  if (t64 === undefined) return new OcaError(`Missing APPTEMPLATE64 for App ${at(app, 'ID') ?? ''}`);
  const tmpl = b64decode(t64) + `\nNAME="${options.name}"\n`;
  const tid = await client.call('one.template.allocate', tmpl);
  if (tid instanceof OcaError) return tid;
  const id = Number(tid);

  const info = await client.call('one.template.info', id, false, false);
  const vmtpl = info instanceof OcaError ? { name: 'VMTEMPLATE', children: [{ name: 'TEMPLATE', children: [] }] } : doc(info);
  const context: string[] = [];
  const has = (p: string): boolean => {
    let e: XmlElement | undefined = vmtpl;
    for (const part of p.split('/')) e = e ? elementChildren(e).find((c) => c.name === part) : undefined;
    return e !== undefined;
  };
  for (const { rc } of disks.values()) {
    const ids = rc.image;
    switch (rc.imageType) {
      case 'IMAGE':
      case 'OS':
      case 'DATABLOCK':
      case 'CDROM':
        addElement(vmtpl, 'TEMPLATE', 'DISK', { IMAGE_ID: String(ids[0]) });
        break;
      case 'CONTEXT':
        context.push(`$FILE[IMAGE_ID="${rubyArray(ids)}"]`);
        break;
      case 'KERNEL':
        if (!has('TEMPLATE/OS')) addElement(vmtpl, 'TEMPLATE', 'OS', {});
        addElement(vmtpl, 'TEMPLATE/OS', 'KERNEL_DS', `$FILE[IMAGE_ID=${rubyArray(ids)}]`);
        break;
    }
  }
  if (context.length > 0) {
    if (!has('TEMPLATE/CONTEXT')) addElement(vmtpl, 'TEMPLATE', 'CONTEXT', {});
    addElement(vmtpl, 'TEMPLATE/CONTEXT', 'FILES_DS', context.join(' '));
  }
  await client.call('one.template.update', id, templateXml(vmtpl), 0);
  return id;
}
