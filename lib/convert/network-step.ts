// The network step of a conversion, inside the inspection's appliance: read the guest's network
// files, bind each configured interface to its NIC, ask the caller which MAC each NIC will have
// on KVM (keeping a MAC or an IP is the target's business), then write the udev rules that give
// those NICs the names the configuration uses, and point configurations tied to the source MAC
// at the KVM one. Linux guests only.

import { RULES_FILE, NETWORK_FILE_GLOBS, bindInterfaces, readGuestNetwork, replaceMac, udevRules, type Binding, type GuestFile, type GuestNic, type NetMode } from './guest-network.js';
import type { GuestFs } from './inspect.js';

/** What the guest uses on one NIC, as its files say. */
export interface NicUse {
  readonly nic: number;
  /** The interface name its configuration uses; undefined when the configuration follows a MAC. */
  readonly name: string | undefined;
  readonly mode: NetMode;
  /** Its static address, or its last DHCP lease. */
  readonly address: string | undefined;
}

export interface NetworkRequest {
  /**
   * The VM's NICs; undefined when they are not known (images converted on their own): a guest
   * that configures one interface then has it bound to whatever single NIC the VM gets.
   */
  readonly nics: readonly GuestNic[] | undefined;
  /**
   * The MAC each NIC will have on KVM, given what the guest uses on them; undefined for a NIC
   * whose MAC OpenNebula will pick. Called once, while the appliance waits.
   */
  readonly assign: (uses: readonly NicUse[]) => Promise<ReadonlyMap<number, string | undefined>>;
}

/** What the step found and did: recorded with the guest facts, listed in the log and summary. */
export interface GuestNetwork {
  readonly interfaces: ReadonlyArray<NicUse & { readonly mac: string | undefined; readonly how: string }>;
  /** One line per file written or binding made. */
  readonly changes: readonly string[];
  readonly warnings: readonly string[];
}

const HOW: Record<Binding['by'], string> = {
  mac: 'its configuration names the MAC',
  slot: "systemd's name for the NIC's PCI slot",
  'vmware-order': "the name VMware's PCI slot gives that NIC",
  'eth-order': 'ethN in NIC order',
  'only-nic': 'the only interface of the only NIC',
};

export async function bindGuestNetwork(fs: GuestFs, req: NetworkRequest): Promise<GuestNetwork> {
  const files: GuestFile[] = [];
  for (const pattern of NETWORK_FILE_GLOBS) {
    for (const path of await fs.glob(pattern)) {
      if (files.some((f) => f.path === path)) continue;
      const text = await fs.read(path);
      if (text !== undefined) files.push({ path, text });
    }
  }
  const config = readGuestNetwork(files);
  const nics = req.nics ?? (config.interfaces.length === 1 ? [{ index: 0, label: 'the NIC the VM gets', sourceMac: '' }] : []);
  const { bindings, unbound } = bindInterfaces(config, nics);
  const uses: NicUse[] = bindings.map((b) => ({ nic: b.nic, name: b.name, mode: b.mode, address: b.address }));
  const macs = await req.assign(uses);

  const changes: string[] = [];
  const warnings: string[] = [...config.notes];
  if (config.interfaces.length === 0) changes.push('no network configuration found in the guest: nothing to bind (OpenNebula contextualization can configure it)');
  const rules = udevRules(bindings, macs, nics.length);
  if (rules !== undefined) {
    await fs.write(RULES_FILE, rules);
    changes.push(`wrote ${RULES_FILE}`);
  }
  const interfaces = [];
  for (const b of bindings) {
    const mac = macs.get(b.nic);
    const nic = nics.find((n) => n.index === b.nic)!;
    const what = `${b.name ?? `the configuration for MAC ${b.macs.join(', ')}`} (${b.mode}${b.address ? ` ${b.address}` : ''}; ${b.files.join(', ')}) is ${nic.label}: ${HOW[b.by]}`;
    if (b.name === undefined) changes.push(`${what}; it follows that MAC, whatever the NIC is called`);
    else if (mac) changes.push(`${what}; named ${b.name} on KVM by MAC ${mac}`);
    else if (nics.length === 1) changes.push(`${what}; named ${b.name} on KVM as the only Ethernet NIC`);
    else warnings.push(`${what}, but its MAC on KVM is not known yet (OpenNebula picks it): the guest will not find ${b.name}; keep the source MACs, or configure the NIC after the first boot`);
    // A configuration tied to the source MAC would not apply to a NIC with another one.
    for (const old of b.macs) {
      if (mac === undefined) {
        warnings.push(`${b.files.join(', ')} is tied to MAC ${old}, which the NIC on KVM will not have (OpenNebula picks its MAC): edit it after the first boot, or keep the source MACs`);
        continue;
      }
      if (old === mac.toLowerCase()) continue;
      for (const path of b.files) {
        const before = files.find((f) => f.path === path)!.text;
        const after = replaceMac(before, old, mac);
        if (after === before) continue;
        await fs.write(path, after);
        changes.push(`${path}: MAC ${old} replaced by ${mac}, the MAC of ${nic.label} on KVM`);
      }
    }
    interfaces.push({ ...uses.find((u) => u.nic === b.nic)!, mac, how: b.by });
  }
  for (const u of unbound) warnings.push(`the guest configures ${u}, which matches none of the VM's NICs: left as it is`);
  if (req.nics === undefined && config.interfaces.length > 1) warnings.push("the VM's NICs are not known here, so the guest's interfaces cannot be bound to them");
  for (const n of nics) {
    if (!bindings.some((b) => b.nic === n.index) && config.interfaces.length > 0) warnings.push(`${n.label}: no configuration in the guest is for it`);
  }
  return { interfaces, changes, warnings };
}
