// The Ceph peer's client identity as files of the bridge user's own (the peer's keyring and conf
// are root's): a bare key and a conf naming the monitors. What a test's Ceph datastore names as
// CEPH_KEY and CEPH_CONF: the stock driver reads them on the bridge host, oneswap on this one.

import type { Bridge } from '../peers/bridge/index.js';
import type { Ceph } from '../peers/ceph/index.js';

export async function cephIdentityOnBridge(ceph: Ceph, bridge: Bridge): Promise<{ keyFile: string; confFile: string }> {
  const keyFile = await bridge.giveFile('ceph.key', `${await ceph.adminKey()}\n`);
  const confFile = await bridge.giveFile('ceph.conf', ceph.clientConf());
  return { keyFile, confFile };
}
