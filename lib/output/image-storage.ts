// What kind of storage an OpenNebula image datastore keeps its images on, read from the datastore
// the way the stock drivers read it (reference: opennebula.md §5.8): a Ceph pool (DS_MAD ceph, or
// TM_MAD ceph under another DS_MAD such as oneswap's: POOL_NAME, CEPH_USER, CEPH_CONF, CEPH_KEY) or
// files under BASE_PATH (fs and the drivers built on it), raw or qcow2 as the datastore decides.
// BRIDGE_LIST names the hosts where the stock drivers do the work that touches the storage.

import type { OneDatastore } from '../one/index.js';

/** How to reach a Ceph pool as the datastore's drivers do: `rbd --id USER --conf CONF --keyfile KEY`. */
export interface CephAccess {
  readonly pool: string;
  /** CEPH_USER; unset: client.admin, as rbd's default. */
  readonly user: string | undefined;
  /** CEPH_CONF; unset: /etc/ceph/ceph.conf. */
  readonly conf: string | undefined;
  /** CEPH_KEY: a keyring (or a file holding the bare key); unset: the keyring the conf names. */
  readonly key: string | undefined;
}

export type ImageStorage =
  | { readonly kind: 'files'; readonly bridges: readonly string[] }
  | CephStorage;

export interface CephStorage {
  readonly kind: 'ceph';
  readonly ceph: CephAccess;
  readonly bridges: readonly string[];
  /**
   * Where oneswap reaches the pool from, as reachCephPool (one-target.ts) decided: the BRIDGE_LIST
   * hosts that have CEPH_CONF and CEPH_KEY when this host has no CEPH_CONF; empty or unset: here.
   */
  readonly cephHosts?: readonly string[];
}

export function imageStorageOf(ds: Pick<OneDatastore, 'dsMad' | 'tmMad' | 'template'>): ImageStorage {
  const t = ds.template;
  // oned keeps BRIDGE_LIST as one space-separated string.
  const bridges = (t.get('BRIDGE_LIST') ?? '').split(/\s+/).filter((h) => h !== '');
  // The ceph TM links and clones RBD images of the pool, whatever DS_MAD made them.
  if (ds.dsMad === 'ceph' || ds.tmMad === 'ceph')
    return {
      kind: 'ceph',
      ceph: { pool: t.get('POOL_NAME') || 'one', user: t.get('CEPH_USER') || undefined, conf: t.get('CEPH_CONF') || undefined, key: t.get('CEPH_KEY') || undefined },
      bridges,
    };
  return { kind: 'files', bridges };
}

