// How qemu reaches an RBD image of an OpenNebula Ceph datastore (POOL_NAME, CEPH_USER, CEPH_CONF,
// CEPH_KEY) without a credential on any command line or in a file others can read: qemu's rbd
// driver takes only `user` and `conf=` from us, and reads the key from what the conf names. So
// the datastore's ceph.conf is copied into a private 0600 file in a 0700 directory, with a
// section for the user that names CEPH_KEY (as `keyring` or `keyfile`, whichever it is) and caps
// how long librados waits for an unreachable cluster. The key itself stays in its own file.
//
// The private conf lives as long as the caller keeps the RbdAccess: the copy's qemu-nbd and, later,
// the conversion's overlays (whose backing file names it) use it; dispose() removes it.
//
// A datastore whose CEPH_CONF and CEPH_KEY are only on its BRIDGE_LIST hosts is reached from one of
// them (location.host): the conf is read there, and the private conf is written there, in a
// `mktemp -d` directory of its own, sent on the script's stdin (never on a command line); only the
// key file's section headers leave the host, to tell a keyring from a bare key.

import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { OneswapError } from '../errors/index.js';
import type { QemuImage } from '../convert/index.js';
import { lastLine, onBridge, shellQuote } from './bridge-host.js';

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
  /**
   * The BRIDGE_LIST host that reaches the pool with its own CEPH_CONF and CEPH_KEY (over ssh,
   * bridge-host.ts): everything that opens the image runs there. Undefined: this host.
   */
  readonly host?: string;
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
  /** The private ceph.conf (on location.host, when set). */
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
  const host = location.host;
  // A relative path on a bridge host is ssh's (its home); here it is ours.
  const sourceConf = host === undefined ? resolve(location.conf ?? DEFAULT_CEPH_CONF) : (location.conf ?? DEFAULT_CEPH_CONF);
  const keyfile = location.keyfile ? (host === undefined ? resolve(location.keyfile) : location.keyfile) : undefined;
  const { settings, keyHeaders } = await (host === undefined ? readHere(sourceConf, keyfile, name) : readOnBridge(host, sourceConf, keyfile, name));
  // A keyring has a [client.…] section; a bare key has none.
  const key = keyfile === undefined ? undefined : /^\s*\[[^\]]+\]/m.test(keyHeaders) ? { keyring: keyfile } : { keyfile };
  // Same file name: librados takes the cluster name ($cluster in default keyring paths) from it.
  const text = privateConf(settings, user, key, timeouts);
  const { conf, remove } = await (host === undefined ? writeHere(basename(sourceConf), text) : writeOnBridge(host, basename(sourceConf), text));
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
    dispose: () => (disposed ??= remove()),
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

interface DatastoreFiles {
  /** CEPH_CONF's text. */
  readonly settings: string;
  /** CEPH_KEY's section headers, if it has any (the key itself not needed); '' without CEPH_KEY. */
  readonly keyHeaders: string;
}

async function readHere(conf: string, keyfile: string | undefined, name: string): Promise<DatastoreFiles> {
  const read = async (path: string, attribute: 'CEPH_CONF' | 'CEPH_KEY'): Promise<string> => {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'EACCES' || code === 'EPERM') throw unreadable(code === 'ENOENT' ? 'missing' : 'denied', path, attribute, name, undefined, err);
      throw new OneswapError('internal', `cannot read the ${WHAT[attribute]} ${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  return { settings: await read(conf, 'CEPH_CONF'), keyHeaders: keyfile === undefined ? '' : await read(keyfile, 'CEPH_KEY') };
}

/** The conf's text and the key file's section headers, read on the bridge host in one ssh session. */
async function readOnBridge(host: string, conf: string, keyfile: string | undefined, name: string): Promise<DatastoreFiles> {
  const marker = `--- oneswap ${randomBytes(8).toString('hex')} ---`;
  const script = [
    `c=${shellQuote(conf)}`,
    `k=${shellQuote(keyfile ?? '')}`,
    'check() { [ -e "$1" ] || { echo "$1" >&2; exit 4; }; [ -r "$1" ] || { echo "$1" >&2; exit 5; }; }',
    'check "$c"',
    '[ -z "$k" ] || check "$k"',
    'cat -- "$c" || exit 6',
    `printf '\\n%s\\n' ${shellQuote(marker)}`,
    `[ -z "$k" ] || grep -E '^[[:space:]]*\\[' -- "$k"`,
    'exit 0',
  ].join('\n');
  const r = await onBridge(host, script, { timeoutMs: 60_000 });
  if (r.code === 4 || r.code === 5) {
    const path = lastLine(r.stderr);
    throw unreadable(r.code === 4 ? 'missing' : 'denied', path, path === conf ? 'CEPH_CONF' : 'CEPH_KEY', name, host);
  }
  const at = r.stdout.lastIndexOf(`\n${marker}`);
  if (r.code !== 0 || at < 0) throw new OneswapError('remote', `cannot read the Ceph configuration ${conf} on the bridge host ${host}: ${lastLine(r.stderr) || `exit ${r.code}`}`);
  return { settings: r.stdout.slice(0, at), keyHeaders: r.stdout.slice(at + marker.length + 1) };
}

const WHAT = { CEPH_CONF: 'Ceph configuration', CEPH_KEY: 'Ceph key file' } as const;

function unreadable(why: 'missing' | 'denied', path: string, attribute: 'CEPH_CONF' | 'CEPH_KEY', name: string, host: string | undefined, cause?: unknown): OneswapError {
  const where = host === undefined ? '' : ` on the bridge host ${host}`;
  if (why === 'missing')
    return new OneswapError('usage', `the ${WHAT[attribute]} ${path} does not exist${where}, needed for ${name}`, { hint: `set the datastore's ${attribute} to the right file`, cause });
  return new OneswapError('auth', `cannot read the ${WHAT[attribute]} ${path}${where}, needed for ${name}: permission denied`, {
    hint: host === undefined ? 'run oneswap as the OpenNebula user (oneadmin), who must be able to read it' : `reach ${host} as the OpenNebula user (oneadmin), who must be able to read it there`,
    cause,
  });
}

/** The private conf in a fresh 0700 directory here; `remove` takes the directory away. */
async function writeHere(fileName: string, text: string): Promise<{ conf: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-rbd-'));
  const conf = join(dir, fileName);
  try {
    await writeFile(conf, text, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return { conf, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * The private conf in a fresh `mktemp -d` directory on the bridge host, its text in the script
 * (on ssh's stdin). Removing it is best-effort: a host gone by then keeps a conf that holds no key,
 * and a qemu-nbd session that ends without being stopped removes it there (qemu-nbd.ts).
 */
async function writeOnBridge(host: string, fileName: string, text: string): Promise<{ conf: string; remove: () => Promise<void> }> {
  const end = `ONESWAP_CONF_${randomBytes(8).toString('hex')}`;
  const script = [
    'umask 077',
    'd=$(mktemp -d -t oneswap-rbd-XXXXXXXXXX) || exit 1',
    `cat > "$d"/${shellQuote(fileName)} <<'${end}' || { rm -rf "$d"; exit 1; }`,
    `${text.replace(/\n$/, '')}`,
    end,
    'echo "$d"',
  ].join('\n');
  const r = await onBridge(host, script, { timeoutMs: 60_000 });
  const dir = r.stdout.trim();
  if (r.code !== 0 || !dir.startsWith('/')) throw new OneswapError('remote', `cannot write a private Ceph configuration on the bridge host ${host}: ${lastLine(r.stderr) || `exit ${r.code}`}`);
  return {
    conf: `${dir}/${fileName}`,
    remove: async () => {
      await onBridge(host, `rm -rf -- ${shellQuote(dir)}`, { timeoutMs: 60_000 }).catch(() => undefined);
    },
  };
}

/** The directory of an access's private conf: what a qemu-nbd serving through it on a bridge host removes should oneswap vanish. */
export function privateConfDir(access: Pick<RbdAccess, 'conf'>): string {
  return dirname(access.conf);
}
