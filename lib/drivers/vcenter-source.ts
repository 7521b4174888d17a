// The vCenter side of a driver action: credentials from the file the datastore (or, for a
// marketplace import, the marketplace) names, a session, and the VM a `vcenter://` URL points at.

import { OneswapError } from '../errors/index.js';
import type { DiskDescription, VmDescription } from '../input/index.js';
import type { DriverActionData } from '../one/index.js';
import { VSphereClient, type VmSummary } from '../vsphere/index.js';
import { CREDENTIALS_ATTRIBUTE, readCredentials } from './credentials.js';
import { describeRef, parseVcenterUrl, type VcenterRef } from './vcenter-url.js';

/** The credentials file: the datastore's attribute first, then the marketplace's. */
export function credentialsFileOf(data: DriverActionData): string {
  const file = data.datastore?.template.get(CREDENTIALS_ATTRIBUTE) || data.marketplace?.template.get(CREDENTIALS_ATTRIBUTE);
  if (!file) {
    const ds = data.datastore ? `datastore ${data.datastore.id} (${data.datastore.name})` : 'the datastore';
    throw new OneswapError('usage', `${ds} has no ${CREDENTIALS_ATTRIBUTE} attribute naming the vCenter credentials file`, {
      hint: `onedatastore update it with ${CREDENTIALS_ATTRIBUTE}="/var/lib/one/.oneswap/vcenter.yaml" (mode 0600, owned by oneadmin)`,
    });
  }
  return file;
}

export async function connectTo(ref: VcenterRef, credentialsFile: string, log: (line: string) => void): Promise<VSphereClient> {
  const creds = await readCredentials(credentialsFile, ref.host, ref.port);
  return VSphereClient.connect({
    host: ref.host,
    port: ref.port,
    credentials: { user: creds.user, password: creds.password },
    tls: creds.tls,
    timeoutMs: 30_000,
    keepAliveMs: 0,
    logger: { warn: (m) => log(`WARN: ${m}`) },
  });
}

/** The VM the URL names: by UUID when it carries one, else by its path in the datacenter. */
export async function findVmOf(client: VSphereClient, ref: VcenterRef): Promise<VmSummary> {
  if (ref.uuid !== undefined) return client.findVm(ref.uuid, { datacenter: ref.datacenter });
  const dc = (await client.datacenters()).find((d) => d.name === ref.datacenter);
  if (!dc) throw new OneswapError('not-found', `vCenter ${ref.host} has no datacenter "${ref.datacenter}" (${describeRef(ref)})`);
  return client.findVm(`${dc.path}/vm/${ref.vmPath.join('/')}`, { datacenter: dc.path });
}

/** The image's PATH as a reference to one disk (stat and cp need the disk number). */
export function diskRefOf(data: DriverActionData): VcenterRef & { readonly disk: number } {
  const ref = parseVcenterUrl(data.image?.path ?? '');
  if (ref.disk === undefined) throw new OneswapError('usage', `${data.image?.path} names no disk: add ?disk=N (0 = the boot disk)`);
  return { ...ref, disk: ref.disk };
}

export function diskOf(vm: VmDescription, ref: VcenterRef & { readonly disk: number }): DiskDescription {
  const disk = vm.disks[ref.disk];
  if (!disk) throw new OneswapError('not-found', `VM ${vm.name} has ${vm.disks.length} disk(s); there is no disk ${ref.disk} (${describeRef(ref)})`);
  return disk;
}
