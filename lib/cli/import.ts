// `oneswap import --vcenter HOST --datastore ID VM...` (cold, or --warm) and the staged warm
// commands `oneswap warm start|sync|cutover|abort VM...`: one run each, with a run log, a progress
// display, both connections, and one exit code for the batch.

import { join } from 'node:path';
import { OneswapError } from '../errors/index.js';
import { openOva, openVmdks, type Firmware, type ReaderSettings, type TransportChoice } from '../input/index.js';
import {
  coldImportVm,
  fileImportVm,
  type FileImportOptions,
  type FileTarget,
  defaultStateDir,
  mapLimited,
  newRunId,
  warmAbort,
  warmCutover,
  warmImport,
  warmStart,
  warmSync,
  type CutoverPolicy,
  type ImportContext,
  type MigrationOptions,
  type VmResult,
  type WarmOptions,
} from '../supervisor/index.js';
import { inRun, type RunCliOptions } from './run-options.js';
import { parseNetworkMap, type DiskFileFormat } from '../output/index.js';
import { connectOne, connectVcenter, parseHost, type VcenterOptions } from './connect.js';
import { parseCutoverAt, parseDuration, parseSize } from '../progress/index.js';

export interface ImportCliOptions extends VcenterOptions, RunCliOptions {
  datacenter?: string;
  /** Required except with --output-dir (main.ts cannot tell, so the runners check). */
  datastore?: string;
  ova?: string;
  vmdk?: string[];
  outputDir?: string;
  outputFormat?: string;
  compressed?: boolean;
  name?: string;
  cpus?: string;
  memory?: string;
  firmware?: string;
  shutdown?: boolean;
  shutdownTimeout: string;
  convert: boolean;
  networkMap: string[];
  keepMac: boolean;
  keepIp?: boolean;
  contextNetwork?: boolean;
  instantiate?: boolean;
  start?: boolean;
  keepOnFailure?: boolean;
  namePrefix: string;
  streams: string;
  parallel: string;
  transport?: string;
  vddkLibdir?: string;
  leaseRounds?: boolean;
  // warm
  warm?: boolean;
  enableCbt?: boolean;
  rehearse?: boolean;
  forcePoweroff?: boolean;
  cutoverAt?: string;
  cutoverWhenBelow?: string;
  syncInterval?: string;
}

export type WarmStage = 'start' | 'sync' | 'cutover' | 'abort';

export async function runImport(vms: string[], o: ImportCliOptions, signal: AbortSignal): Promise<number> {
  if (o.ova !== undefined || o.vmdk !== undefined) return runFileImport(vms, o, signal);
  for (const [flag, set] of [['--output-dir', o.outputDir], ['--output-format', o.outputFormat], ['--compressed', o.compressed]] as const)
    if (set !== undefined) throw new OneswapError('usage', `${flag} is for --ova and --vmdk imports into a directory; a vCenter import goes into an OpenNebula datastore`);
  for (const [flag, set] of [['--name', o.name], ['--cpus', o.cpus], ['--memory', o.memory], ['--firmware', o.firmware]] as const)
    if (set !== undefined) throw new OneswapError('usage', `${flag} is for --vmdk (and --name for --ova); a vCenter VM has its own`);
  if (o.datastore === undefined)
    throw new OneswapError('usage', 'a vCenter import needs --datastore ID', {
      hint: 'oneswap import --vcenter HOST --datastore ID VM...; from files: --ova FILE or --vmdk FILE... with --datastore ID or --output-dir DIR',
    });
  if (o.warm) {
    const policy: CutoverPolicy = {
      at: o.cutoverAt === undefined ? undefined : parseCutoverAt(o.cutoverAt),
      whenBelowBytes: o.cutoverWhenBelow === undefined ? undefined : parseSize(o.cutoverWhenBelow, '--cutover-when-below'),
      intervalMs: parseDuration(o.syncInterval ?? '5m', '--sync-interval'),
    };
    return runVms(vms, o, signal, (ctx, vm, opts) => warmImport(ctx, vm, opts, policy));
  }
  for (const [flag, set] of [['--cutover-at', o.cutoverAt], ['--cutover-when-below', o.cutoverWhenBelow], ['--sync-interval', o.syncInterval], ['--enable-cbt', o.enableCbt]] as const)
    if (set !== undefined) throw new OneswapError('usage', `${flag} belongs to a warm migration`, { hint: 'add --warm, or use oneswap warm start|sync|cutover' });
  return runVms(vms, o, signal, coldImportVm);
}

export async function runWarmStage(stage: WarmStage, vms: string[], o: ImportCliOptions, signal: AbortSignal): Promise<number> {
  const fn = { start: warmStart, sync: warmSync, cutover: warmCutover, abort: warmAbort }[stage];
  return runVms(vms, o, signal, fn);
}

/** Migrates each VM with `fn` under one run: log, display, connections, one exit code. */
async function runVms(vms: string[], o: ImportCliOptions, signal: AbortSignal, fn: (ctx: ImportContext, vm: string, opts: WarmOptions) => Promise<VmResult>): Promise<number> {
  if (vms.length === 0) throw new OneswapError('usage', 'no VM named', { hint: 'oneswap import --vcenter HOST --datastore ID VM...' });
  const opts = importOptions(o);
  const parallel = positiveInt(o.parallel, '--parallel');
  return inRun(o, opts, async (emit, warn) => {
    const vsphere = await connectVcenter(o, warn);
    try {
      const one = await connectOne(o.endpoint);
      try {
        const ctx: ImportContext = { vsphere, vcenterHost: parseHost(o.vcenter ?? process.env.ONESWAP_VCENTER ?? '').host, one, emit, signal };
        return await mapLimited(vms, parallel, (vm) => fn(ctx, vm, opts));
      } finally {
        one.close();
      }
    } finally {
      await vsphere.logout().catch(() => undefined);
    }
  });
}

/** `oneswap import --ova|--vmdk`: one VM from files, into OpenNebula or a directory. */
async function runFileImport(vms: string[], o: ImportCliOptions, signal: AbortSignal): Promise<number> {
  const opts = fileImportOptions(vms, o);
  return inRun(o, opts, async (emit) => {
    const vm = o.ova !== undefined
      ? await openOva(o.ova, { name: o.name })
      : await openVmdks(o.vmdk!, {
          name: o.name,
          cpus: o.cpus === undefined ? 1 : positiveInt(o.cpus, '--cpus'),
          memoryMiB: o.memory === undefined ? 2048 : Math.ceil(parseSize(/^\d+$/.test(o.memory) ? `${o.memory}M` : o.memory, '--memory') / 2 ** 20),
          firmware: o.firmware === undefined ? 'bios' : firmwareOf(o.firmware),
        });
    if (opts.target.kind === 'dir') return [await fileImportVm({ emit, signal }, vm, opts)];
    const one = await connectOne(o.endpoint);
    try {
      return [await fileImportVm({ one, emit, signal }, vm, opts)];
    } finally {
      one.close();
    }
  });
}

/** The options of a file import, refusing those that belong to a vCenter source or another target. */
function fileImportOptions(vms: string[], o: ImportCliOptions): FileImportOptions {
  const source = o.ova !== undefined ? '--ova' : '--vmdk';
  if (o.ova !== undefined && o.vmdk !== undefined) throw new OneswapError('usage', '--ova and --vmdk do not go together', { hint: 'import an OVA, or one VM made of VMDK files' });
  if (vms.length > 0) throw new OneswapError('usage', `VM names (${vms.join(', ')}) belong to a vCenter import; ${source} imports the VM its files describe`, { hint: 'use --name to name it' });
  const refused: Array<[string, unknown]> = [
    ['--vcenter', o.vcenter], ['--user', o.user], ['--password-file', o.passwordFile], ['--thumbprint', o.thumbprint], ['--ca', o.ca], ['--insecure', o.insecure],
    ['--datacenter', o.datacenter], ['--shutdown', o.shutdown], ['--warm', o.warm], ['--enable-cbt', o.enableCbt], ['--cutover-at', o.cutoverAt],
    ['--cutover-when-below', o.cutoverWhenBelow], ['--sync-interval', o.syncInterval], ['--force-poweroff', o.forcePoweroff],
    ['--transport', o.transport === 'auto' ? undefined : o.transport], ['--vddk-libdir', o.vddkLibdir], ['--lease-rounds', o.leaseRounds],
  ];
  for (const [flag, value] of refused) if (value !== undefined) throw new OneswapError('usage', `${flag} belongs to a vCenter import, not to ${source}`);
  if (o.ova !== undefined) for (const [flag, value] of [['--cpus', o.cpus], ['--memory', o.memory], ['--firmware', o.firmware]] as const) {
    if (value !== undefined) throw new OneswapError('usage', `${flag} is for --vmdk; an OVA's descriptor gives the hardware`);
  }
  let target: FileTarget;
  if (o.outputDir !== undefined) {
    if (o.datastore !== undefined) throw new OneswapError('usage', '--output-dir and --datastore do not go together', { hint: 'write into a directory, or import into an OpenNebula datastore' });
    if (o.instantiate || o.start) throw new OneswapError('usage', '--instantiate/--start need OpenNebula; --output-dir writes files');
    if (o.keepIp) throw new OneswapError('usage', '--keep-ip reserves addresses in OpenNebula; --output-dir writes files (its summary lists the addresses the guest uses)');
    const format = outputFormatOf(o.outputFormat);
    if (o.compressed && format !== 'qcow2') throw new OneswapError('usage', '--compressed needs --output-format qcow2: compressed clusters are a qcow2 feature');
    target = { kind: 'dir', dir: o.outputDir, format, ...(o.compressed ? { compressed: true } : {}) };
  } else {
    if (o.outputFormat !== undefined) throw new OneswapError('usage', '--output-format is for --output-dir: a datastore decides its images\' format');
    if (o.compressed) throw new OneswapError('usage', '--compressed is for --output-dir with --output-format qcow2: a datastore\'s images are written as it makes them');
    if (o.datastore === undefined) throw new OneswapError('usage', `${source} needs --datastore ID (OpenNebula) or --output-dir DIR`);
    target = { kind: 'one', datastoreId: positiveInt(o.datastore, '--datastore', true) };
  }
  return { ...migrationOptions(o), target };
}

function outputFormatOf(value: string | undefined): DiskFileFormat {
  if (value === undefined || value === 'raw' || value === 'qcow2') return value ?? 'raw';
  throw new OneswapError('usage', `--output-format ${value}: say raw or qcow2`);
}

function firmwareOf(value: string): Firmware {
  if (value === 'bios' || value === 'efi') return value;
  throw new OneswapError('usage', `--firmware "${value}" is not bios or efi`);
}

function importOptions(o: ImportCliOptions): WarmOptions {
  return {
    ...migrationOptions(o),
    datacenter: o.datacenter,
    datastoreId: positiveInt(o.datastore ?? '', '--datastore', true),
    shutdown: o.shutdown ?? false,
    shutdownTimeoutMs: positiveInt(o.shutdownTimeout, '--shutdown-timeout') * 1000,
    enableCbt: o.enableCbt ?? false,
    rehearse: o.rehearse ?? true,
    forcePoweroff: o.forcePoweroff ?? false,
    leaseRounds: o.leaseRounds ?? false,
    readers: readerSettings(o),
  };
}

/** --transport and --vddk-libdir (or ONESWAP_VDDK_LIBDIR). */
export function readerSettings(o: { transport?: string; vddkLibdir?: string }): ReaderSettings {
  const transport = (o.transport ?? 'auto') as TransportChoice;
  const libdir = o.vddkLibdir ?? (process.env.ONESWAP_VDDK_LIBDIR || undefined);
  return { transport, ...(libdir === undefined ? {} : { vddkLibdir: libdir }) };
}

/** The options every import shares, vCenter or files. */
function migrationOptions(o: ImportCliOptions): MigrationOptions {
  const stateDir = o.stateDir ?? defaultStateDir();
  return {
    convert: o.convert,
    networkMap: parseNetworkMap(o.networkMap),
    keepMac: o.keepMac,
    keepIp: o.keepIp ?? false,
    contextNetwork: o.contextNetwork,
    instantiate: (o.instantiate ?? false) || (o.start ?? false),
    keepOnFailure: o.keepOnFailure ?? false,
    namePrefix: o.namePrefix,
    streams: positiveInt(o.streams, '--streams'),
    stateDir,
    logDir: o.logDir ?? join(stateDir, 'logs'),
    runId: newRunId(),
    additions: { contextPackage: o.contextPackage, guestAgent: o.guestAgent ?? false },
  };
}

export function positiveInt(value: string, option: string, allowZero = false): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || (!allowZero && n === 0)) throw new OneswapError('usage', `${option} "${value}" is not a ${allowZero ? 'non-negative' : 'positive'} integer`);
  return n;
}
