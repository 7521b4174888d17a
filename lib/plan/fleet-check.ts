// `plan check`: every precheck of an import for every VM of a plan, before anything is changed,
// from one read of the vCenter inventory (the plan's VMs found in the index, then their hardware
// and snapshots in one request: a fixed number of SOAP calls whatever the plan's size) and one of OpenNebula's networks, names and
// target datastores. Each check is the import's own (sourceRefusals, mapNics, placeDisks,
// chooseReader, nameClashes, unusableDatastore, reachableStorage); what only a plan has is here:
// names given twice within the plan, and room summed over the plan.

import { OneswapError, describeError, type Refusal } from '../errors/index.js';
import { guestSupport } from '../convert/index.js';
import { availablePlugins, chooseReader, describeVcenterVm, hasFlatFiles, placeDisks, vmIdentity, type Plugins, type VcenterDisk, type VmDescription } from '../input/index.js';
import type { OneClient, OneDatastore } from '../one/index.js';
import { DEFAULT_CEPH_CONF, datastoreName, finishedImport, imageName, neededMiB, mapNics, nameClashes, namesTaken, reachableStorage, templateName, unusableDatastore, type NetworkCandidate, type TakenNames } from '../output/index.js';
import { Journal, foreignSnapshotRefusal, networkCandidates, sourceRefusals, type JournalData } from '../supervisor/index.js';
import type { FoundVm, FoundVms, VSphereClient, VmSummary } from '../vsphere/index.js';
import { cleaningOf } from './finished-earlier.js';
import { planRoom, poolRoom, runOrder, type PoolLine, type RoomLine, type SharedPool } from './plan-capacity.js';
import type { PlannedVm } from './planned-vm.js';

/** One thing found about a VM: a stable code to key on, and one line saying what and the fix. */
export interface Finding {
  readonly code: string;
  readonly message: string;
}

export interface VmCheck {
  readonly key: string;
  readonly line: number;
  /** The vCenter VM the plan's query found. */
  readonly vm?: VmSummary;
  /** Any of these stops the VM's migration. */
  readonly blockers: readonly Finding[];
  readonly warnings: readonly Finding[];
}

/** A target datastore with everything the plan puts on it (RoomLine: free, needed, its VMs, those that overflow). */
export interface CapacityLine extends RoomLine {
  readonly name: string;
  /** What the images become: files (raw or qcow2) or RBD images of a Ceph pool. */
  readonly kind: 'files' | 'ceph';
  readonly cephPool?: string;
  /** The BRIDGE_LIST hosts that do the work (files), or reach the pool (Ceph); empty: this host. */
  readonly workHosts: readonly string[];
  /** What reaching its storage said, e.g. bridge hosts left out. */
  readonly notes: readonly string[];
}

export interface FleetCheck {
  /** In plan order. */
  readonly vms: readonly VmCheck[];
  /** Per target datastore that exists and can be used, in the order the plan names them. */
  readonly capacity: readonly CapacityLine[];
  /** Per Ceph pool that several of the target datastores keep their images in. */
  readonly pools: readonly PoolLine[];
  /** True when any VM has a blocker. */
  readonly blocked: boolean;
}

export interface FleetCheckContext {
  readonly vsphere: VSphereClient;
  readonly one: OneClient;
  /** The vCenter as imports name it in the images' source attributes. */
  readonly vcenterHost: string;
  /** VMware's VDDK (--vddk-libdir, oneswap.yaml): which readers nbdkit offers is probed with it. */
  readonly vddkLibdir?: string | undefined;
  /** Where the runs keep their journals: an earlier unfinished run's images are resumed, not clashes. */
  readonly stateDir?: string | undefined;
}

/** A target datastore as the plan's VMs find it: usable (with its storage reached) or refused. */
type Target = { readonly ok: true; readonly ds: OneDatastore; readonly kind: 'files' | 'ceph'; readonly cephPool?: string; readonly cephConf?: string; readonly workHosts: readonly string[]; readonly notes: readonly string[] } | { readonly ok: false; readonly refusal: Refusal };

export async function checkFleet(ctx: FleetCheckContext, plan: readonly PlannedVm[], signal: AbortSignal): Promise<FleetCheck> {
  const inventory = await ctx.vsphere.findVms(plan.map((v) => v.query));
  signal.throwIfAborted();
  const networks = await networkCandidates(ctx.one);
  const taken = await namesTaken(ctx.one);
  const targets = new Map<number, Target>();
  for (const id of new Set(plan.map((v) => v.datastoreId))) {
    signal.throwIfAborted();
    targets.set(id, await reachTarget(ctx.one, id));
  }
  const plugins = new Map<string, Plugins>();
  for (const transport of new Set(plan.map((v) => v.transport))) plugins.set(transport, await availablePlugins({ transport, vddkLibdir: ctx.vddkLibdir }));

  const checks = new Map<string, Draft>();
  const given = new Map<string, PlannedVm>();
  const seen = new Map<string, PlannedVm>();
  // A VM the plan names twice is migrated once at most: its second entry takes no room.
  const twice = new Set<string>();
  for (const [i, planned] of plan.entries()) {
    const draft = await checkOne(ctx, planned, inventory.found[i]!, inventory, networks, taken, targets.get(planned.datastoreId)!, plugins.get(planned.transport)!);
    if (draft.vm !== undefined) {
      const other = seen.get(draft.vm.ref.value);
      if (other !== undefined) {
        twice.add(planned.key);
        draft.blockers.push({
          code: 'duplicate-vm',
          message: describeError(new OneswapError('conflict', `VM ${draft.vm.path} is also VM ${other.key} of this plan (line ${other.line})`, { hint: 'keep one of the two entries' })),
        });
      } else if (!draft.finished) {
        seen.set(draft.vm.ref.value, planned);
        // Images and templates are apart in OpenNebula: an image may share a template's name.
        for (const [kind, name] of [...draft.names.images.map((n) => ['image', n] as const), ['template', draft.names.template] as const]) {
          const first = given.get(`${kind}:${name}`);
          if (first === undefined) given.set(`${kind}:${name}`, planned);
          else
            draft.blockers.push({
              code: 'name-clash',
              message: describeError(new OneswapError('conflict', `${kind} name "${name}" is also given by VM ${first.key} of this plan (line ${first.line})`, { hint: 'set another namePrefix on one of them' })),
            });
        }
      }
    }
    checks.set(planned.key, draft);
  }

  const { capacity, pools } = roomFor(plan.filter((p) => !twice.has(p.key)), checks, targets);
  const vms = plan.map((p): VmCheck => {
    const d = checks.get(p.key)!;
    return { key: p.key, line: p.line, ...(d.vm ? { vm: d.vm } : {}), blockers: d.blockers, warnings: d.warnings };
  });
  return { vms, capacity, pools, blocked: vms.some((v) => v.blockers.length > 0) };
}

interface Draft {
  readonly vm?: VmSummary;
  /** Bytes its new images take in the target datastore, as the import counts them (openTarget): every disk's provisioned size. */
  readonly bytes: number;
  /** The image and template names its import gives. */
  readonly names: { readonly images: readonly string[]; readonly template: string };
  /** Migrated by an earlier run: a run skips it. */
  readonly finished?: true;
  readonly blockers: Finding[];
  readonly warnings: Finding[];
}

const finding = (r: Refusal): Finding => ({ code: r.code, message: describeError(r.error, 'plan') });

/** The checks of one VM that need nothing but what was read for all. */
async function checkOne(ctx: FleetCheckContext, planned: PlannedVm, found: FoundVm, inventory: FoundVms, networks: readonly NetworkCandidate[], taken: TakenNames, target: Target, plugins: Plugins): Promise<Draft> {
  const blockers: Finding[] = [];
  const warnings: Finding[] = [];
  if (!found.ok) {
    blockers.push({ code: found.error.kind === 'conflict' ? 'ambiguous' : 'not-found', message: describeError(found.error, 'plan') });
    return { bytes: 0, names: { images: [], template: '' }, blockers, warnings };
  }
  const vm = found.vm;
  const description = describeVcenterVm(ctx.vcenterHost, vm);
  const earlier = ctx.stateDir === undefined ? undefined : await earlierRun(ctx.stateDir, description, planned.datastoreId);
  // A VM an earlier run of the plan migrated: a run skips it (finished-earlier.ts), so nothing else
  // about it matters now, and its names are its own.
  const finished = await finishedImport(ctx.one, description, planned, taken, cleaningOf(earlier));
  if (finished !== undefined) {
    warnings.push({
      code: 'finished',
      message: `VM ${vm.name} was migrated by an earlier run (template ${finished.templateId}, image${finished.imageIds.length === 1 ? '' : 's'} ${finished.imageIds.join(', ')}); a plan run skips it`,
    });
    return { vm, bytes: 0, names: { images: [], template: '' }, finished: true, blockers, warnings };
  }
  blockers.push(...sourceRefusals(vm, planned.mode).map(finding));
  if (planned.mode.kind === 'warm' && !vm.changeTrackingEnabled && planned.mode.enableCbt)
    warnings.push({ code: 'cbt-off', message: `changed block tracking is off for VM ${vm.name}; the migration turns it on, effective at its first snapshot` });
  if (planned.mode.kind === 'cold' && planned.mode.shutdown && vm.powerState === 'poweredOn')
    warnings.push({ code: 'shutdown', message: `VM ${vm.name} is powered on; the migration asks its guest to shut down` });
  const foreign = foreignSnapshotRefusal(vm, vm.snapshots);
  if (foreign) blockers.push(finding(foreign));
  else if (vm.snapshots.length > 0)
    warnings.push({ code: 'own-snapshots', message: `VM ${vm.name} has oneswap's leftover snapshot${vm.snapshots.length === 1 ? '' : 's'} ${vm.snapshots.map((s) => `"${s.name}"`).join(', ')}; the migration removes them` });
  if (planned.convert) {
    const guest = guestSupport(vm);
    if (guest.refusal) blockers.push(finding(guest.refusal));
    if (guest.doubt) warnings.push(finding(guest.doubt));
  }

  const refused = (code: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      blockers.push({ code, message: describeError(err, 'plan') });
    }
  };
  refused('unmapped-network', () => mapNics(vm.name, description.nics, networks, planned.networkMap));
  refused('disk-datastore', () => {
    for (const d of placeDisks(vm, description, inventory.datacenters, inventory.datastores).disks) readerFor(planned, plugins, vm, d, blockers);
  });

  // As openTarget: what an earlier unfinished run made is resumed; only the rest is created.
  if (earlier !== undefined && earlier.disks.length > 0)
    warnings.push({ code: 'resumes', message: `an earlier run of VM ${vm.name} left images ${earlier.disks.map((d) => d.imageId).join(', ')}; the migration resumes them` });
  const pending = description.disks.filter((d) => !earlier?.disks.some((j) => j.sourceKey === d.sourceKey));
  const names = { images: pending.map((d) => imageName(description, d, planned.namePrefix)), template: templateName(description, planned.namePrefix) };
  const own = new Set(earlier?.disks.map((d) => d.imageId) ?? []);
  const others = { images: taken.images.filter((i) => !own.has(i.id)), templates: taken.templates.filter((t) => t.id !== earlier?.templateId) };
  blockers.push(...nameClashes(names.images, names.template, others).map(finding));
  if (!target.ok) blockers.push(finding(target.refusal));
  return { vm, bytes: pending.reduce((sum, d) => sum + d.capacityBytes, 0), names, blockers, warnings };
}

/** The journal an earlier unfinished import of the VM into the datastore left, read only. */
async function earlierRun(stateDir: string, description: VmDescription, datastoreId: number): Promise<JournalData | undefined> {
  const { journal, resumed } = await Journal.open(stateDir, vmIdentity(description), datastoreId);
  return resumed ? journal.data : undefined;
}

/** The reader the import would choose (precheck), or the blocker of a transport that cannot read the disk. */
function readerFor(planned: PlannedVm, plugins: Plugins, vm: VmSummary, disk: VcenterDisk, blockers: Finding[]): void {
  try {
    chooseReader({ transport: planned.transport }, plugins, disk, planned.mode.kind === 'warm' && vm.powerState === 'poweredOn');
  } catch (err) {
    blockers.push({ code: hasFlatFiles(disk.datastoreType) ? 'no-reader' : 'vsan-no-reader', message: describeError(err, 'plan') });
  }
}

async function reachTarget(one: OneClient, id: number): Promise<Target> {
  let ds: OneDatastore;
  try {
    ds = await one.datastore(id);
  } catch (err) {
    if (err instanceof OneswapError && err.kind === 'not-found') return { ok: false, refusal: { code: 'datastore-not-found', error: err } };
    throw err;
  }
  const unusable = unusableDatastore(ds);
  if (unusable) return { ok: false, refusal: unusable };
  const notes: string[] = [];
  try {
    const storage = await reachableStorage(ds, (line) => notes.push(line));
    return storage.kind === 'ceph'
      ? { ok: true, ds, kind: 'ceph', cephPool: storage.ceph.pool, cephConf: storage.ceph.conf ?? DEFAULT_CEPH_CONF, workHosts: storage.cephHosts ?? [], notes }
      : { ok: true, ds, kind: 'files', workHosts: storage.bridges, notes };
  } catch (err) {
    if (err instanceof OneswapError) return { ok: false, refusal: { code: 'storage-unreachable', error: err } };
    throw err;
  }
}

/**
 * Room summed over the plan per usable target datastore, then per Ceph pool that several of them
 * share; a VM that does not fit gets a 'capacity' blocker and takes no room from the next.
 */
function roomFor(plan: readonly PlannedVm[], checks: ReadonlyMap<string, Draft>, targets: ReadonlyMap<number, Target>): { capacity: CapacityLine[]; pools: PoolLine[] } {
  const usable = [...targets.values()].flatMap((t) => (t.ok ? [t] : []));
  const demands = runOrder(plan).flatMap((p) => {
    const d = checks.get(p.key)!;
    return d.vm === undefined ? [] : [{ key: p.key, datastoreId: p.datastoreId, bytes: d.bytes }];
  });
  const refuse = (where: string, line: Omit<RoomLine, 'datastoreId'>): void => {
    for (const o of line.overflow) {
      checks.get(o.key)!.blockers.push({
        code: 'capacity',
        message: describeError(
          new OneswapError('capacity', `${where} has ${neededMiB(line.freeBytes)} MiB free; the VMs before ${o.key} in the plan take ${neededMiB(o.before)} MiB, its disks need ${neededMiB(o.bytes)} MiB more (the plan puts ${neededMiB(line.neededBytes)} MiB there in all)`, {
            hint: 'free space, move VMs to another datastore, or run them in a later plan once the first are done',
          }),
        ),
      });
    }
  };
  const lines = planRoom(demands, usable.map((t) => ({ datastoreId: t.ds.id, freeMb: t.ds.freeMb })));
  const capacity = lines.map((line, i): CapacityLine => {
    const t = usable[i]!;
    refuse(datastoreName(t.ds), line);
    return {
      ...line,
      name: t.ds.name,
      kind: t.kind,
      ...(t.cephPool === undefined ? {} : { cephPool: t.cephPool }),
      workHosts: t.workHosts,
      notes: t.notes,
    };
  });
  const placed = new Set(lines.flatMap((l) => l.overflow.map((o) => o.key)));
  const pools = sharedPools(usable).map((pool) => {
    const line = poolRoom(demands.filter((d) => !placed.has(d.key)), pool);
    refuse(`the Ceph pool ${pool.pool} of datastores ${pool.datastoreIds.join(', ')}`, line);
    return line;
  });
  return { capacity, pools };
}

/** Ceph datastores that keep their images in the same pool of the same cluster (its conf), two or more. */
function sharedPools(targets: ReadonlyArray<Extract<Target, { ok: true }>>): SharedPool[] {
  const groups = new Map<string, Array<Extract<Target, { ok: true }>>>();
  for (const t of targets) {
    if (t.kind !== 'ceph') continue;
    const key = `${t.cephConf}\n${t.cephPool}`;
    groups.set(key, [...(groups.get(key) ?? []), t]);
  }
  return [...groups.values()]
    .filter((g) => g.length > 1)
    .map((g) => ({ pool: g[0]!.cephPool!, datastoreIds: g.map((t) => t.ds.id), freeMb: Math.min(...g.map((t) => t.ds.freeMb)) }));
}
