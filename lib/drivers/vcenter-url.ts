// The `vcenter://` URL an image PATH or a marketplace app SOURCE carries to name one vCenter disk:
//
//   vcenter://HOST[:PORT]/DATACENTER/VM-PATH[?uuid=UUID][&disk=N]
//
// VM-PATH is the VM's folder path below the datacenter's VM folder plus its name ("web01",
// "prod/db/db01"); every segment percent-encoded. `uuid` (instance or BIOS UUID) wins over the
// path when given, so a VM renamed or moved after the catalog was read is still found. `disk` is
// the disk's 0-based position in boot order (SCSI, SATA, NVMe, IDE; bus, then unit), the order
// oneswap lists disks in. No secret ever goes in the URL: credentials come from a file the
// datastore or marketplace names.

import { OneswapError } from '../errors/index.js';

export interface VcenterRef {
  readonly host: string;
  readonly port: number;
  readonly datacenter: string;
  /** Segments below the datacenter's VM folder; the last one is the VM name. */
  readonly vmPath: readonly string[];
  readonly uuid: string | undefined;
  readonly disk: number | undefined;
}

const FORM = 'vcenter://HOST[:PORT]/DATACENTER/VM-PATH?disk=N';

export function isVcenterUrl(path: string): boolean {
  return /^vcenter:\/\//i.test(path.trim());
}

export function parseVcenterUrl(text: string): VcenterRef {
  const bad = (why: string): OneswapError => new OneswapError('usage', `"${text}" is not a vCenter disk URL: ${why} (expected ${FORM})`);
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    throw bad('it does not parse as a URL');
  }
  if (url.protocol !== 'vcenter:') throw bad('the scheme is not vcenter');
  if (url.username || url.password) throw new OneswapError('usage', `a vCenter URL must not carry credentials (${url.protocol}//${url.host}…): put them in the credentials file the datastore names`);
  if (!url.hostname) throw bad('no host');
  const segments = url.pathname.split('/').filter((s) => s !== '');
  if (segments.length < 2) throw bad('no datacenter and VM path');
  let decoded: string[];
  try {
    decoded = segments.map((s) => decodeURIComponent(s));
  } catch {
    throw bad('a path segment is not valid percent-encoding');
  }
  for (const key of url.searchParams.keys()) if (key !== 'disk' && key !== 'uuid') throw bad(`unknown parameter "${key}"`);
  const diskText = url.searchParams.get('disk');
  let disk: number | undefined;
  if (diskText !== null) {
    if (!/^\d+$/.test(diskText)) throw bad(`disk "${diskText}" is not a disk number`);
    disk = Number(diskText);
  }
  const uuid = url.searchParams.get('uuid') ?? undefined;
  if (uuid !== undefined && !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(uuid)) throw bad(`uuid "${uuid}" is not a UUID`);
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: url.port ? Number(url.port) : 443,
    datacenter: decoded[0]!,
    vmPath: decoded.slice(1),
    uuid,
    disk,
  };
}

export function formatVcenterUrl(ref: VcenterRef): string {
  const host = ref.host.includes(':') ? `[${ref.host}]` : ref.host;
  const port = ref.port === 443 ? '' : `:${ref.port}`;
  const path = [ref.datacenter, ...ref.vmPath].map((s) => encodeURIComponent(s)).join('/');
  const query = [ref.uuid === undefined ? '' : `uuid=${ref.uuid}`, ref.disk === undefined ? '' : `disk=${ref.disk}`].filter(Boolean).join('&');
  return `vcenter://${host}${port}/${path}${query ? `?${query}` : ''}`;
}

/** The URL for the log and messages: which VM, which disk. */
export function describeRef(ref: VcenterRef): string {
  return `VM ${ref.vmPath.join('/')} in datacenter ${ref.datacenter} of vCenter ${ref.host}${ref.disk === undefined ? '' : `, disk ${ref.disk}`}`;
}
