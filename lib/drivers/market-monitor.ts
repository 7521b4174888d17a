// The marketplace catalog: every VM of a vCenter as a VMTEMPLATE app, and each of its disks as an
// IMAGE app whose SOURCE is the disk's vcenter:// URL (reference §7.3). Sunstone's Import button
// (the stock export) then allocates one image per disk app on the chosen datastore — oneswap's
// datastore driver copies it — and a VM template from the VM app's APPTEMPLATE64.
//
// The marketplace template says where to look: VCENTER_HOST (host[:port]),
// ONESWAP_CREDENTIALS (the credentials file), VCENTER_DATACENTER (optional: only that datacenter).

import { OneswapError } from '../errors/index.js';
import { describeVcenterVm, type VmDescription } from '../input/index.js';
import { sanitizeName, Template, type OneMarketplace } from '../one/index.js';
import { buildVmTemplate, diskImageDescription, diskSourceAttributes } from '../output/index.js';
import { parseEndpoint } from '../vsphere/index.js';
import { connectTo } from './vcenter-source.js';
import { CREDENTIALS_ATTRIBUTE } from './credentials.js';
import { formatVcenterUrl, type VcenterRef } from './vcenter-url.js';

const MiB = 1024 * 1024;

export async function monitorMarketplace(market: OneMarketplace, log: (line: string) => void): Promise<string> {
  const hostSpec = market.template.get('VCENTER_HOST');
  if (!hostSpec) throw new OneswapError('usage', `marketplace ${market.id} (${market.name}) has no VCENTER_HOST attribute`);
  const credentials = market.template.get(CREDENTIALS_ATTRIBUTE);
  if (!credentials) throw new OneswapError('usage', `marketplace ${market.id} (${market.name}) has no ${CREDENTIALS_ATTRIBUTE} attribute naming the vCenter credentials file`);
  const { host, port } = parseEndpoint(hostSpec, `VCENTER_HOST of marketplace ${market.id}`);
  const onlyDc = market.template.get('VCENTER_DATACENTER') || undefined;

  const client = await connectTo({ host, port, datacenter: '', vmPath: [], uuid: undefined, disk: undefined }, credentials, log);
  let vms: VmDescription[];
  let dcOf: Map<string, string>;
  try {
    const summaries = (await client.vms()).filter((v) => onlyDc === undefined || v.datacenter === onlyDc);
    dcOf = new Map(summaries.map((s) => [s.instanceUuid || s.uuid, s.datacenter]));
    vms = summaries.map((s) => describeVcenterVm(host, s));
  } finally {
    await client.logout().catch(() => undefined);
  }

  const names = uniqueNames(vms, host);
  const lines: string[] = [];
  let usedMb = 0;
  for (const vm of vms) {
    if (vm.disks.length === 0) {
      log(`INFO: VM ${vm.source.path} has no disks: not listed`);
      continue;
    }
    const uuid = vm.source.kind === 'vcenter' ? vm.source.instanceUuid || vm.source.uuid : '';
    const ref = refOf(vm, host, port, dcOf.get(uuid) ?? '', uuid);
    const vmApp = names.get(vm)!;
    const vmTemplate = new Template();
    for (const a of buildVmTemplate({ name: vmApp, vm, disks: [], nics: [], guest: undefined, oneMajorVersion: 7, importedAt: new Date() }).attributes)
      if (a.name !== 'NAME' && a.name !== 'ONESWAP_IMPORTED_AT') vmTemplate.add(a.name, a.value);
    const app = Template.of({
      NAME: vmApp,
      SOURCE: formatVcenterUrl(ref),
      IMPORT_ID: uuid,
      ORIGIN_ID: '-1',
      TYPE: 'VMTEMPLATE',
      SIZE: '0',
      FORMAT: 'raw',
      VERSION: vm.source.kind === 'vcenter' ? 'vmware' : '',
      DESCRIPTION: describeVm(vm),
      APPTEMPLATE64: base64(vmTemplate.toText()),
    });
    vm.disks.forEach((disk) => {
      const diskApp = `${vmApp} disk${disk.index}`;
      const sizeMb = Math.ceil(disk.capacityBytes / MiB);
      usedMb += sizeMb;
      const image = Template.of({
        TYPE: disk.index === 0 ? 'OS' : 'DATABLOCK',
        PERSISTENT: 'YES',
        DEV_PREFIX: 'sd',
        DESCRIPTION: diskImageDescription(vm, disk),
        ...diskSourceAttributes(vm, disk),
      });
      lines.push(
        appLine(
          Template.of({
            NAME: diskApp,
            SOURCE: formatVcenterUrl({ ...ref, disk: disk.index }),
            IMPORT_ID: `${uuid}-disk${disk.index}`,
            ORIGIN_ID: '-1',
            TYPE: 'IMAGE',
            SIZE: sizeMb,
            FORMAT: 'raw',
            DESCRIPTION: `Disk ${disk.index} of VMware VM ${vm.name}: ${disk.label}, ${gib(disk.capacityBytes)}, ${disk.bus}`,
            APPTEMPLATE64: base64(image.toText()),
          }),
        ),
      );
      app.add('DISK', { NAME: `disk${disk.index}`, APP: diskApp });
    });
    lines.push(appLine(app));
  }
  return [`USED_MB=${usedMb}`, `TOTAL_MB=${usedMb}`, 'FREE_MB=0', ...lines].join('\n') + '\n';
}

function refOf(vm: VmDescription, host: string, port: number, datacenter: string, uuid: string): VcenterRef {
  // The inventory path is "/<folders>/<datacenter>/vm/<folders>/<name>": keep what follows "vm".
  const path = vm.source.kind === 'vcenter' ? vm.source.path.split('/').filter(Boolean) : [];
  const at = path.findIndex((seg, i) => seg === datacenter && path[i + 1] === 'vm');
  return { host, port, datacenter, vmPath: at >= 0 ? path.slice(at + 2) : [vm.name], uuid: uuid || undefined, disk: undefined };
}

/** App names are unique across every marketplace (§7.3): the vCenter host is part of the name. */
function uniqueNames(vms: readonly VmDescription[], host: string): Map<VmDescription, string> {
  const base = (vm: VmDescription): string => sanitizeName(`${vm.name} (${host})`);
  const counts = new Map<string, number>();
  for (const vm of vms) counts.set(base(vm), (counts.get(base(vm)) ?? 0) + 1);
  return new Map(
    vms.map((vm) => {
      const b = base(vm);
      const uuid = vm.source.kind === 'vcenter' ? vm.source.instanceUuid || vm.source.uuid : '';
      return [vm, counts.get(b)! > 1 ? sanitizeName(`${vm.name} (${host} ${uuid.slice(0, 8)})`) : b];
    }),
  );
}

function describeVm(vm: VmDescription): string {
  const total = vm.disks.reduce((n, d) => n + d.capacityBytes, 0);
  const nets = [...new Set(vm.nics.map((n) => n.network))].join(', ');
  return [
    `VMware VM ${vm.source.kind === 'vcenter' ? vm.source.path : vm.name}`,
    vm.guestFullName || vm.guestId,
    `${vm.cpus} vCPU, ${vm.memoryMiB} MiB, ${vm.disks.length} disk(s) ${gib(total)}, ${vm.firmware.toUpperCase()}`,
    nets ? `networks: ${nets}` : 'no NICs',
    'oneswap copies its disks (the VM must be powered off) and converts the guest; add NICs to the template',
  ].join('; ');
}

function gib(bytes: number): string {
  return `${(bytes / 1024 ** 3).toFixed(bytes < 10 * 1024 ** 3 ? 1 : 0)} GiB`;
}

function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

function appLine(t: Template): string {
  return `APP="${base64(t.toText())}"`;
}
