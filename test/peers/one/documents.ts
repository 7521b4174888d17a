/**
 * The XML documents of reference §4, with the element order of oned's to_xml.
 * String fields are escaped like one_util::escape_xml, except where §5.7 saw
 * CDATA on a real 7.4.0: DS_MAD / TM_MAD / BASE_PATH and the datastore
 * TEMPLATE, image SOURCE, TEMPLATE/ERROR, and the VM DISK sub-attributes.
 */
import { Pools, Perms, ImageRec, DatastoreRec, UserRec, VmTemplateRec, VmRec, VnetRec, ArRec, MarketRec, MarketAppRec, numToMac, numToIp } from './state.js';
import { cdata, escapeXml } from './xml.js';
import { Template } from './template-syntax.js';

const e = escapeXml;
const tag = (name: string, v: string | number): string => `<${name}>${v}</${name}>`;

export function permsXml(p: Perms): string {
  return (
    '<PERMISSIONS>' +
    tag('OWNER_U', p.ownerU) + tag('OWNER_M', p.ownerM) + tag('OWNER_A', p.ownerA) +
    tag('GROUP_U', p.groupU) + tag('GROUP_M', p.groupM) + tag('GROUP_A', p.groupA) +
    tag('OTHER_U', p.otherU) + tag('OTHER_M', p.otherM) + tag('OTHER_A', p.otherA) +
    '</PERMISSIONS>'
  );
}

function lockXml(lock: ImageRec['lock']): string {
  if (!lock) return '';
  return `<LOCK>${tag('LOCKED', lock.locked)}${tag('OWNER', lock.owner)}${tag('TIME', lock.time)}${tag('REQ_ID', lock.reqId)}</LOCK>`;
}

function collection(name: string, ids: number[]): string {
  return `<${name}>${ids.map((i) => tag('ID', i)).join('')}</${name}>`;
}

const imageTemplateCdata = (path: string): boolean => path === 'ERROR';

export function imageXml(pools: Pools, img: ImageRec): string {
  const ds = pools.datastores.get(img.dsId);
  const orphans = ds?.template.get('ALLOW_ORPHANS') ?? 'NO';
  return (
    '<IMAGE>' +
    tag('ID', img.id) + tag('UID', img.uid) + tag('GID', img.gid) +
    tag('UNAME', pools.userName(img.uid)) + tag('GNAME', pools.groupName(img.gid)) + tag('NAME', e(img.name)) +
    lockXml(img.lock) + permsXml(img.perms) +
    tag('TYPE', img.type) + tag('DISK_TYPE', img.diskType) + tag('PERSISTENT', img.persistent ? 1 : 0) +
    tag('REGTIME', img.regtime) +
    tag('SOURCE', cdata(img.source)) + tag('PATH', e(img.path)) + tag('FORMAT', e(img.format)) + tag('FS', e(img.fs)) +
    tag('SIZE', img.size) + tag('STATE', img.state) + tag('PREV_STATE', img.prevState) +
    tag('RUNNING_VMS', img.runningVms) + tag('CLONING_OPS', img.cloningOps) + tag('CLONING_ID', img.cloningId) +
    tag('TARGET_SNAPSHOT', img.targetSnapshot) + tag('DATASTORE_ID', img.dsId) + tag('DATASTORE', e(img.dsName)) +
    collection('VMS', img.vms) + collection('CLONES', img.clones) + collection('APP_CLONES', img.appClones) +
    img.template.toXml('TEMPLATE', imageTemplateCdata) +
    `<SNAPSHOTS>${tag('ALLOW_ORPHANS', e(orphans))}${tag('CURRENT_BASE', -1)}${tag('NEXT_SNAPSHOT', 0)}</SNAPSHOTS>` +
    '<BACKUP_INCREMENTS></BACKUP_INCREMENTS>' +
    '</IMAGE>'
  );
}

export function datastoreXml(pools: Pools, ds: DatastoreRec): string {
  return (
    '<DATASTORE>' +
    tag('ID', ds.id) + tag('UID', ds.uid) + tag('GID', ds.gid) +
    tag('UNAME', pools.userName(ds.uid)) + tag('GNAME', pools.groupName(ds.gid)) + tag('NAME', e(ds.name)) +
    permsXml(ds.perms) +
    tag('DS_MAD', cdata(ds.dsMad)) + tag('TM_MAD', cdata(ds.tmMad)) + tag('BASE_PATH', cdata(ds.basePath)) +
    tag('TYPE', ds.type) + tag('DISK_TYPE', ds.diskType) + tag('STATE', ds.state) +
    collection('CLUSTERS', ds.clusters) +
    tag('TOTAL_MB', ds.totalMb) + tag('FREE_MB', ds.freeMb) + tag('USED_MB', ds.usedMb) +
    collection('IMAGES', ds.images) +
    ds.template.toXml('TEMPLATE', () => true) +
    '</DATASTORE>'
  );
}

export function userXml(pools: Pools, u: UserRec, full: boolean): string {
  const quotas =
    '<DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA><VM_QUOTA></VM_QUOTA><IMAGE_QUOTA></IMAGE_QUOTA>';
  const tokens = [...u.tokens.entries()]
    .map(([t, v]) => `<LOGIN_TOKEN>${tag('TOKEN', e(t))}${tag('EXPIRATION_TIME', v.expires)}${tag('EGID', v.egid)}</LOGIN_TOKEN>`)
    .join('');
  return (
    '<USER>' +
    tag('ID', u.id) + tag('GID', u.gid) + collection('GROUPS', u.groups) + tag('GNAME', pools.groupName(u.gid)) +
    tag('NAME', e(u.name)) + tag('PASSWORD', e(u.password)) + tag('AUTH_DRIVER', e(u.authDriver)) +
    tag('ENABLED', u.enabled ? 1 : 0) + tokens +
    u.template.toXml('TEMPLATE') +
    (full ? quotas + `<DEFAULT_USER_QUOTAS>${quotas}</DEFAULT_USER_QUOTAS>` : '') +
    '</USER>'
  );
}

export function vmTemplateXml(pools: Pools, t: VmTemplateRec, tmpl: Template = t.template): string {
  return (
    '<VMTEMPLATE>' +
    tag('ID', t.id) + tag('UID', t.uid) + tag('GID', t.gid) +
    tag('UNAME', pools.userName(t.uid)) + tag('GNAME', pools.groupName(t.gid)) + tag('NAME', e(t.name)) +
    lockXml(t.lock) + permsXml(t.perms) + tag('REGTIME', t.regtime) +
    tmpl.toXml('TEMPLATE', (p) => p.startsWith('DISK/')) +
    '</VMTEMPLATE>'
  );
}

export function vmXml(pools: Pools, vm: VmRec): string {
  return (
    '<VM>' +
    tag('ID', vm.id) + tag('UID', vm.uid) + tag('GID', vm.gid) +
    tag('UNAME', pools.userName(vm.uid)) + tag('GNAME', pools.groupName(vm.gid)) + tag('NAME', e(vm.name)) +
    permsXml(vm.perms) +
    tag('LAST_POLL', vm.lastPoll) + tag('STATE', vm.state) + tag('LCM_STATE', vm.lcmState) +
    tag('PREV_STATE', vm.prevState) + tag('PREV_LCM_STATE', vm.prevLcmState) + tag('RESCHED', vm.resched) +
    tag('STIME', vm.stime) + tag('ETIME', vm.etime) + tag('DEPLOY_ID', e(vm.deployId)) +
    '<MONITORING></MONITORING><SCHED_ACTIONS></SCHED_ACTIONS>' +
    vm.template.toXml('TEMPLATE', (p) => p.startsWith('DISK/')) +
    vm.userTemplate.toXml('USER_TEMPLATE') +
    '<HISTORY_RECORDS></HISTORY_RECORDS><BACKUPS><BACKUP_CONFIG></BACKUP_CONFIG><BACKUP_IDS></BACKUP_IDS></BACKUPS>' +
    '</VM>'
  );
}

export function arXml(ar: ArRec, withLeases: boolean): string {
  const attrs = new Map<string, string>(ar.extra);
  attrs.set('AR_ID', String(ar.arId));
  attrs.set('MAC', numToMac(ar.mac));
  attrs.set('SIZE', String(ar.size));
  attrs.set('TYPE', ar.type);
  if (ar.ip !== undefined) attrs.set('IP', numToIp(ar.ip));
  let s = '<AR>';
  for (const [k, v] of [...attrs.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) s += tag(k, e(v));
  s += tag('MAC_END', numToMac(ar.mac + ar.size - 1));
  if (ar.ip !== undefined) s += tag('IP_END', numToIp(ar.ip + ar.size - 1));
  s += tag('USED_LEASES', ar.leases.size);
  if (withLeases) {
    s += '<LEASES>';
    for (const l of [...ar.leases.values()].sort((a, b) => a.index - b.index)) {
      s += '<LEASE>';
      if (ar.ip !== undefined) s += tag('IP', numToIp(ar.ip + l.index));
      s += tag('MAC', numToMac(ar.mac + l.index)) + tag('VM', l.vm);
      s += '</LEASE>';
    }
    s += '</LEASES>';
  }
  return s + '</AR>';
}

export function vnetXml(pools: Pools, vn: VnetRec, withLeases: boolean): string {
  const used = vn.ars.reduce((n, ar) => n + ar.leases.size, 0);
  return (
    '<VNET>' +
    tag('ID', vn.id) + tag('UID', vn.uid) + tag('GID', vn.gid) +
    tag('UNAME', pools.userName(vn.uid)) + tag('GNAME', pools.groupName(vn.gid)) + tag('NAME', e(vn.name)) +
    permsXml(vn.perms) + collection('CLUSTERS', [0]) +
    tag('BRIDGE', e(vn.bridge)) + tag('BRIDGE_TYPE', e(vn.bridgeType)) + tag('STATE', vn.state) + tag('PREV_STATE', 0) +
    tag('PARENT_NETWORK_ID', '') + tag('TEMPLATE_ID', -1) + tag('VN_MAD', e(vn.vnMad)) + tag('PHYDEV', '') +
    tag('VLAN_ID', '') + tag('OUTER_VLAN_ID', '') + tag('VLAN_ID_AUTOMATIC', 0) + tag('OUTER_VLAN_ID_AUTOMATIC', 0) +
    tag('USED_LEASES', used) +
    collection('VROUTERS', []) + collection('UPDATED_VMS', []) + collection('OUTDATED_VMS', []) +
    collection('UPDATING_VMS', []) + collection('ERROR_VMS', []) +
    vn.template.toXml('TEMPLATE') +
    `<AR_POOL>${vn.ars.map((ar) => arXml(ar, withLeases)).join('')}</AR_POOL>` +
    '</VNET>'
  );
}

/**
 * MarketPlace::to_xml (7.x, share/doc/xsd/marketplace.xsd). NAME/UNAME/GNAME are written
 * raw by oned (valid names cannot hold markup); the TEMPLATE values are in CDATA like
 * the datastore TEMPLATE seen on 7.4.0 (§5.7) — not observed for markets, a guess.
 */
export function marketXml(pools: Pools, m: MarketRec): string {
  return (
    '<MARKETPLACE>' +
    tag('ID', m.id) + tag('UID', m.uid) + tag('GID', m.gid) +
    tag('UNAME', e(pools.userName(m.uid))) + tag('GNAME', e(pools.groupName(m.gid))) + tag('NAME', e(m.name)) +
    tag('STATE', m.state) + tag('MARKET_MAD', e(m.marketMad)) + tag('ZONE_ID', m.zoneId) +
    tag('TOTAL_MB', m.totalMb) + tag('FREE_MB', m.freeMb) + tag('USED_MB', m.usedMb) +
    collection('MARKETPLACEAPPS', [...m.apps].sort((a, b) => a - b)) +
    permsXml(m.perms) +
    m.template.toXml('TEMPLATE', () => true) +
    '</MARKETPLACE>'
  );
}

/**
 * MarketPlaceApp::to_xml (share/doc/xsd/marketplaceapp.xsd): ID, UID, GID, UNAME, GNAME,
 * LOCK?, REGTIME, NAME, ZONE_ID, ORIGIN_ID, SOURCE, MD5, SIZE, DESCRIPTION, VERSION, FORMAT,
 * APPTEMPLATE64, MARKETPLACE_ID, MARKETPLACE, STATE, TYPE, PERMISSIONS, TEMPLATE. Fixed
 * fields escaped; TEMPLATE vector sub-attributes (the `DISK=[NAME,APP]` of a VMTEMPLATE
 * app) in CDATA like VM template DISKs, single values escaped.
 */
export function marketAppXml(pools: Pools, a: MarketAppRec): string {
  return (
    '<MARKETPLACEAPP>' +
    tag('ID', a.id) + tag('UID', a.uid) + tag('GID', a.gid) +
    tag('UNAME', e(pools.userName(a.uid))) + tag('GNAME', e(pools.groupName(a.gid))) +
    lockXml(a.lock) +
    tag('REGTIME', a.regtime) + tag('NAME', e(a.name)) + tag('ZONE_ID', a.zoneId) + tag('ORIGIN_ID', a.originId) +
    tag('SOURCE', e(a.source)) + tag('MD5', e(a.md5)) + tag('SIZE', a.size) +
    tag('DESCRIPTION', e(a.description)) + tag('VERSION', e(a.version)) + tag('FORMAT', e(a.format)) +
    tag('APPTEMPLATE64', e(a.apptemplate64)) +
    tag('MARKETPLACE_ID', a.marketId) + tag('MARKETPLACE', e(a.marketName)) +
    tag('STATE', a.state) + tag('TYPE', a.type) +
    permsXml(a.perms) +
    a.template.toXml('TEMPLATE', (p) => p.includes('/')) +
    '</MARKETPLACEAPP>'
  );
}

export function poolXml(root: string, items: string[]): string {
  return `<${root}>${items.join('')}</${root}>`;
}
