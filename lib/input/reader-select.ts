// Which reader each disk gets, and opening them for one state of the VM. The rules are ESXi's:
// a running VM's disk chain is locked against file downloads and vSAN has no flat files, so
// /folder serves only a powered-off VM's disks on a file datastore. NFC serves everything: VDDK
// (or nbdkit's open nfc plugin) with random access, or an export lease as one stream per disk.

import { OneswapError } from '../errors/index.js';
import type { MoRef, VSphereClient, VmDisk, VmSummary } from '../vsphere/index.js';
import type { DiskReading, ReaderChoice, ReaderKind, TransportChoice } from './disk-reader.js';
import { openFolderReading } from './reader-folder.js';
import { openLease } from './reader-lease.js';
import { openNbdkitDisk } from './reader-nbdkit.js';
import { nbdkitPluginMissing } from './nbdkit.js';

export interface ReaderSettings {
  readonly transport: TransportChoice;
  /** VMware's VDDK, unpacked (the directory holding lib64/): --vddk-libdir or oneswap.yaml. */
  readonly vddkLibdir?: string | undefined;
}

/** The state a reader opens: the disks of the powered-off VM, or a snapshot (the VM may run). */
export type ReadState = { readonly kind: 'powered-off' } | { readonly kind: 'snapshot'; readonly snapshot: MoRef; readonly vmRunning: boolean };

export interface DiskPlace {
  readonly device: VmDisk;
  /** The datastore's type as vCenter reports it: "VMFS", "NFS", "vsan", "vvol"… */
  readonly datastoreType: string;
}

/** What nbdkit offers on this machine: probed once per run. */
export interface Plugins {
  readonly vddk: boolean;
  readonly nfc: boolean;
}

/** vSAN and vVols keep disks as objects: no file to download over /folder. */
export const hasFlatFiles = (type: string): boolean => !/^(vsan|vvol)$/i.test(type);

/**
 * The reader of one disk, and why, when the VM runs (a snapshot is read) or not; an explicit
 * choice that cannot work is a usage error.
 */
export function chooseReader(settings: ReaderSettings, plugins: Plugins, place: DiskPlace, vmRunning: boolean): ReaderChoice {
  const disk = place.device.fileName;
  const folderProblem = vmRunning
    ? 'the VM runs, and ESXi refuses a file download of a running VM\u2019s disks'
    : !hasFlatFiles(place.datastoreType)
      ? `datastore ${place.device.datastoreName} is ${place.datastoreType}, which keeps disks as objects, not files`
      : undefined;
  switch (settings.transport) {
    case 'folder':
      if (folderProblem !== undefined)
        throw new OneswapError('usage', `--transport folder cannot read ${disk}: ${folderProblem}`, {
          hint: { cli: 'use --transport auto (an export lease, or VDDK when --vddk-libdir is given)', plan: 'set transport: auto for this VM (or in defaults): an export lease, or VDDK when --vddk-libdir is given' },
        });
      return { reader: 'folder', why: '--transport folder' };
    case 'lease':
      return { reader: 'lease', why: '--transport lease' };
    case 'vddk':
      if (settings.vddkLibdir === undefined)
        throw new OneswapError('usage', '--transport vddk needs VMware\u2019s VDDK', {
          hint: {
            cli: 'pass --vddk-libdir DIR (the unpacked vmware-vix-disklib-distrib folder), or set vddk-libdir in oneswap.yaml',
            plan: 'pass --vddk-libdir DIR (the unpacked vmware-vix-disklib-distrib folder) to plan check and plan run, or set vddk-libdir in oneswap.yaml; or set transport: auto for this VM (or in defaults)',
          },
        });
      if (!plugins.vddk) throw noPlugin('vddk', settings.vddkLibdir);
      return { reader: 'vddk', why: `--transport vddk (VDDK in ${settings.vddkLibdir})` };
    case 'nfc':
      if (!plugins.nfc) throw noPlugin('nfc');
      return { reader: 'nfc', why: '--transport nfc' };
    case 'auto':
      if (settings.vddkLibdir !== undefined && plugins.vddk) return { reader: 'vddk', why: `VDDK in ${settings.vddkLibdir}: random access over NBD` };
      if (plugins.nfc) return { reader: 'nfc', why: 'nbdkit has the nfc plugin: random access over NBD' };
      if (folderProblem === undefined) return { reader: 'folder', why: 'the VM is off and its disk is a file: datastore HTTP with ranges' };
      return { reader: 'lease', why: `${folderProblem}; no VDDK given (--vddk-libdir), so an export lease streams it` };
  }
}

function noPlugin(name: 'vddk' | 'nfc', libdir?: string): OneswapError {
  return new OneswapError('usage', name === 'vddk' ? `nbdkit cannot load its vddk plugin with the VDDK in ${libdir}` : 'this nbdkit has no nfc plugin', {
    hint: {
      cli: `${name === 'vddk' ? 'install nbdkit\u2019s vddk plugin and check that DIR holds lib64/libvixDiskLib.so.*; or' : 'nbdkit\u2019s nfc plugin comes with newer nbdkit releases;'} use --transport auto`,
      plan: `${name === 'vddk' ? 'install nbdkit\u2019s vddk plugin and check that DIR holds lib64/libvixDiskLib.so.*; or' : 'nbdkit\u2019s nfc plugin comes with newer nbdkit releases;'} set transport: auto for this VM (or in defaults)`,
    },
  });
}

/** The readers of a VM's disks in one state; `finish` completes (or aborts) what they hold open. */
export interface Readings {
  get(key: number): DiskReading;
  finish(ok: boolean, why?: string): Promise<void>;
}

export interface OpenReadings {
  readonly client: VSphereClient;
  readonly vm: VmSummary;
  readonly dcPath: string;
  readonly disks: readonly DiskPlace[];
  readonly state: ReadState;
  readonly choices: ReadonlyMap<number, ReaderChoice>;
  readonly settings: ReaderSettings;
  readonly signal: AbortSignal;
}

export async function openReadings(o: OpenReadings): Promise<Readings> {
  const readings = new Map<number, DiskReading>();
  const byReader = (r: ReaderKind): DiskPlace[] => o.disks.filter((d) => o.choices.get(d.device.key)?.reader === r);
  const closers: Array<(ok: boolean, why?: string) => Promise<void>> = [];
  const finish = async (ok: boolean, why?: string): Promise<void> => {
    const errors: unknown[] = [];
    for (const c of closers.splice(0)) await c(ok, why).catch((e: unknown) => errors.push(e));
    if (ok && errors.length > 0) throw errors[0];
  };
  try {
    for (const d of byReader('folder')) readings.set(d.device.key, await openFolderReading(o.client, o.dcPath, d.device));
    const leased = byReader('lease');
    if (leased.length > 0) {
      const lease = await openLease(o.client, o.state.kind === 'snapshot' ? { snapshot: o.state.snapshot } : { vm: o.vm.ref }, leased.map((d) => d.device), { vmName: o.vm.name, signal: o.signal });
      closers.push((ok, why) => (ok ? lease.complete() : lease.abort(why)));
      for (const d of leased) readings.set(d.device.key, lease.disks.get(d.device.key)!);
    }
    const viaNbd = [...byReader('vddk'), ...byReader('nfc')];
    if (viaNbd.length > 0) {
      const login = await o.client.loginFacts(o.signal);
      for (const d of viaNbd) {
        const plugin = o.choices.get(d.device.key)!.reader as 'vddk' | 'nfc';
        const r = await openNbdkitDisk(
          {
            plugin,
            ...(plugin === 'vddk' ? { libdir: o.settings.vddkLibdir! } : {}),
            server: login.host,
            port: login.port,
            user: login.user,
            password: login.password,
            thumbprint: login.thumbprintSha1,
            vm: o.vm.ref.value,
            file: d.device.fileName,
            ...(o.state.kind === 'snapshot' ? { snapshot: o.state.snapshot.value } : {}),
          },
          { signal: o.signal },
        );
        closers.push(() => r.close());
        readings.set(d.device.key, r);
      }
    }
  } catch (err) {
    await finish(false, (err as Error).message);
    throw err;
  }
  return {
    get(key) {
      const r = readings.get(key);
      if (r === undefined) throw new OneswapError('internal', `no reader opened for disk key ${key}`);
      return r;
    },
    finish,
  };
}

const probes = new Map<string, Promise<Plugins>>();

/** nbdkit's vddk (with this libdir) and nfc plugins, probed once per process and libdir. */
export function availablePlugins(settings: ReaderSettings): Promise<Plugins> {
  if (settings.transport === 'folder' || settings.transport === 'lease') return Promise.resolve({ vddk: false, nfc: false });
  const key = settings.vddkLibdir ?? '';
  let p = probes.get(key);
  if (p === undefined) {
    p = Promise.all([settings.vddkLibdir === undefined ? 'no VDDK given' : nbdkitPluginMissing('vddk', settings.vddkLibdir), nbdkitPluginMissing('nfc')]).then(([vddk, nfc]) => ({ vddk: vddk === undefined, nfc: nfc === undefined }));
    probes.set(key, p);
  }
  return p;
}
