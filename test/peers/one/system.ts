/**
 * one.system.version and one.system.config (OPENNEBULA_CONFIGURATION, §2.1):
 * enough of oned.conf for clients to discover DATASTORE_LOCATION, DS_MAD_CONF,
 * TM_MAD_CONF, MARKET_MAD_CONF and the restricted attributes at run time.
 */
import { CallContext, IMAGE_RESTRICTED_ATTR, Sim, TM_MAD_CONF, VM_RESTRICTED_ATTR } from './simulator.js';
import { Template } from './template-syntax.js';

export function systemVersion(sim: Sim): string {
  return sim.config.version;
}

export function systemConfig(sim: Sim, call: CallContext): string {
  const t = new Template();
  const c = sim.config;
  t.add('API_LIST_ORDER', c.apiListOrder);
  t.add('DATASTORE_CAPACITY_CHECK', 'yes');
  t.add('DATASTORE_LOCATION', c.datastoreLocation);
  t.addVector('DATASTORE_MAD', new Map([['ARGUMENTS', `-t 15 -d ${Object.keys(c.dsMadConf).join(',')} -s shared,ssh,local,qcow2,ceph`], ['EXECUTABLE', 'one_datastore']]));
  t.add('DEFAULT_CDROM_DEVICE_PREFIX', 'hd');
  t.add('DEFAULT_DEVICE_PREFIX', 'sd');
  t.add('DEFAULT_IMAGE_PERSISTENT', '');
  t.add('DEFAULT_IMAGE_PERSISTENT_NEW', c.defaultImagePersistentNew ? 'YES' : 'NO');
  t.add('DEFAULT_IMAGE_TYPE', 'OS');
  for (const [name, conf] of Object.entries(c.dsMadConf)) t.addVector('DS_MAD_CONF', new Map([['NAME', name], ...Object.entries(conf)]));
  for (const a of IMAGE_RESTRICTED_ATTR) t.add('IMAGE_RESTRICTED_ATTR', a);
  t.add('MANAGER_TIMER', '15');
  t.addVector('MARKET_MAD', new Map([['ARGUMENTS', `-t 15 -m ${Object.keys(c.marketMadConf).join(',')}`], ['EXECUTABLE', 'one_market']]));
  for (const [name, conf] of Object.entries(c.marketMadConf)) t.addVector('MARKET_MAD_CONF', new Map([['NAME', name], ...Object.entries(conf)]));
  t.add('MONITORING_INTERVAL_DATASTORE', String(Math.round(c.datastoreMonitorIntervalMs / 1000)));
  t.add('MONITORING_INTERVAL_MARKET', String(Math.round(c.marketMonitorIntervalMs / 1000)));
  t.add('PORT', '2633');
  for (const [name, conf] of Object.entries(TM_MAD_CONF)) t.addVector('TM_MAD_CONF', new Map([['NAME', name], ...Object.entries(conf)]));
  t.add('VERSION', c.version);
  for (const a of VM_RESTRICTED_ATTR) t.add('VM_RESTRICTED_ATTR', a);
  for (const a of ['VN_MAD', 'PHYDEV', 'VLAN_ID', 'BRIDGE', 'AR/VN_MAD', 'AR/PHYDEV', 'AR/VLAN_ID', 'AR/BRIDGE']) t.add('VNET_RESTRICTED_ATTR', a);
  void call; // filtered for non-oneadmin groups on real oned; nothing secret is simulated here
  return t.toXml('OPENNEBULA_CONFIGURATION');
}
