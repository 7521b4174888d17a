// How qemu reaches an RBD image of an OpenNebula Ceph datastore (POOL_NAME, CEPH_USER, CEPH_CONF,
// CEPH_KEY) without a credential on any command line or in a file others can read: qemu's rbd
// driver takes only `user` and `conf=` from us, and reads the key from what the conf names. So
// the datastore's ceph.conf is copied into a private 0600 file in a 0700 directory, with a
// section for the user that names CEPH_KEY (as `keyring` or `keyfile`, whichever it is) and caps
// how long librados waits for an unreachable cluster. The key itself stays in its own file.
//
// The private conf lives as long as the caller keeps the RbdAccess: the copy's qemu-nbd and, later,
// the conversion's overlays (whose backing file names it) use it; dispose() removes it.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { OneswapError } from '../errors/index.js';
import type { QemuImage } from '../convert/index.js';

/** An RBD image as an OpenNebula Ceph datastore names it. */
export interface RbdLocation {
  /** POOL_NAME. */
  readonly pool: string;
  /** The image in the pool, e.g. "one-12". */
  readonly image: string;
  /** CEPH_USER: the cephx id, without "client." (default "admin", as for the rbd command). */
  readonly user?: string;
  /** CEPH_CONF (default /etc/ceph/ceph.conf). */
  readonly conf?: string;
  /** CEPH_KEY: the user's keyring, or a file holding the bare key. Default: the keyring the conf names. */
  readonly keyfile?: string;
  /** The datastore as errors name it first ("datastore 101 (ceph)"): what the user fixes is its. */
  readonly datastore?: string;
}

export interface RbdTimeouts {
  /** Longest wait for the monitors: connecting, authenticating, pool lookups (default 30 s). */
  readonly connectSeconds?: number;
  /** Longest wait for one OSD operation, a write among them (default 120 s). */
  readonly operationSeconds?: number;
}

export interface RbdAccess {
  /** "rbd one/one-12": shown in errors and logs. */
  readonly name: string;
  readonly location: RbdLocation;
  /** The cephx id qemu connects as. */
  readonly user: string;
  /** The private ceph.conf. */
  readonly conf: string;
  /** How qemu opens the image: `json:` with the rbd driver under raw, naming the private conf. */
  readonly qemu: QemuImage;
  /** Removes the private conf; nothing may open the image through this access afterwards. */
  dispose(): Promise<void>;
}

/** Where rbd and librados look for the cluster's configuration when CEPH_CONF is unset. */
export const DEFAULT_CEPH_CONF = '/etc/ceph/ceph.conf';

/** Writes the private conf for `location` and returns how qemu reaches the image through it. */
export async function openRbdAccess(location: RbdLocation, timeouts: RbdTimeouts = {}): Promise<RbdAccess> {
  const user = (location.user?.trim() || 'admin').replace(/^client\./, '');
  const name = `rbd ${location.pool}/${location.image}`;
  // They go into the conf's text: no line breaks or brackets that would start other settings.
  if (!/^[\w.@-]+$/.test(user)) throw new OneswapError('usage', `CEPH_USER "${user}" is not a Ceph user name`, { hint: 'give the cephx id without "client.", e.g. libvirt' });
  for (const path of [location.conf, location.keyfile]) {
    if (path !== undefined && /[\r\n]/.test(path)) throw new OneswapError('usage', `the path ${JSON.stringify(path)} for ${name} has a line break`);
  }
  const sourceConf = resolve(location.conf ?? DEFAULT_CEPH_CONF);
  const settings = await readDatastoreFile(sourceConf, 'CEPH_CONF', 'Ceph configuration', name);
  const key = location.keyfile ? await keySetting(resolve(location.keyfile), name) : undefined;

  const dir = await mkdtemp(join(tmpdir(), 'oneswap-rbd-'));
  // Same file name: librados takes the cluster name ($cluster in default keyring paths) from it.
  const conf = join(dir, basename(sourceConf));
  try {
    await writeFile(conf, privateConf(settings, user, key, timeouts), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const qemu: QemuImage = {
    filename: `json:${JSON.stringify({ driver: 'raw', file: { driver: 'rbd', pool: location.pool, image: location.image, user, conf } })}`,
    format: 'raw',
  };
  let disposed: Promise<void> | undefined;
  return {
    name,
    location,
    user,
    conf,
    qemu,
    dispose: () => (disposed ??= rm(dir, { recursive: true, force: true })),
  };
}

/**
 * The datastore's settings, then ours for the user: Ceph reads the later of two equal settings,
 * and a [client.<id>] section before [client] and [global], so ours win wherever the datastore's
 * conf sets the same.
 */
export function privateConf(settings: string, user: string, key: { readonly keyring?: string; readonly keyfile?: string } | undefined, timeouts: RbdTimeouts): string {
  const connect = timeouts.connectSeconds ?? 30;
  const operation = timeouts.operationSeconds ?? 120;
  const lines = [
    '',
    `# Added by oneswap for client.${user}: the key is read from its own file; librados gives up on`,
    '# an unreachable cluster instead of waiting 300 s (or, for an OSD, forever).',
    `[client.${user}]`,
    ...(key?.keyring ? [`keyring = ${key.keyring}`] : []),
    ...(key?.keyfile ? [`keyfile = ${key.keyfile}`] : []),
    `client mount timeout = ${connect}`,
    `rados mon op timeout = ${connect}`,
    `rados osd op timeout = ${operation}`,
    '',
  ];
  return `${settings.replace(/\s*$/, '\n')}${lines.join('\n')}`;
}

async function readDatastoreFile(path: string, attribute: string, what: string, name: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new OneswapError('usage', `the ${what} ${path} does not exist, needed for ${name}`, { hint: `set the datastore's ${attribute} to the right file`, cause: err });
    if (code === 'EACCES' || code === 'EPERM')
      throw new OneswapError('auth', `cannot read the ${what} ${path}, needed for ${name}: permission denied`, {
        hint: 'run oneswap as the OpenNebula user (oneadmin), who must be able to read it',
        cause: err,
      });
    throw new OneswapError('internal', `cannot read the ${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** CEPH_KEY as Ceph takes it: a keyring (has a [client.…] section) or a bare base64 key. */
async function keySetting(path: string, name: string): Promise<{ keyring: string } | { keyfile: string }> {
  const text = await readDatastoreFile(path, 'CEPH_KEY', 'Ceph key file', name);
  return /^\s*\[[^\]]+\]/m.test(text) ? { keyring: path } : { keyfile: path };
}
