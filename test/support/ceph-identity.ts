// The Ceph peer's client identity as files of the bridge user's own (the peer's keyring and conf
// are root's): a bare key and a conf naming the monitors. What a test's Ceph datastore names as
// CEPH_KEY and CEPH_CONF: the stock driver reads them on the bridge host, oneswap on this one.

import { readFile } from 'node:fs/promises';
import type { Bridge } from '../peers/bridge/index.js';
import type { Ceph } from '../peers/ceph/index.js';

export async function cephIdentityOnBridge(ceph: Ceph, bridge: Bridge): Promise<{ keyFile: string; confFile: string }> {
  const key = /key\s*=\s*(\S+)/.exec(await readFile(ceph.keyring, 'utf8'))?.[1];
  if (!key) throw new Error(`no key in ${ceph.keyring}`);
  const keyFile = await bridge.giveFile('ceph.key', `${key}\n`);
  const confFile = await bridge.giveFile('ceph.conf', ['[global]', `fsid = ${ceph.fsid}`, `mon host = [v2:${ceph.monHostV2},v1:${ceph.monHost}]`, ''].join('\n'));
  return { keyFile, confFile };
}
