// A fleet of test VMs on the vCenter simulator: many small VMs spread over several ESXi hosts and
// datastores, made with createTestVm (real disk bytes, sha256 of each disk) several at a time, for
// tests of whole-estate migrations and per-host budgets (issue 18).

import { createTestVm, type DiskSpec, type TestVm, type TestVmSpec } from './fixture.js';
import type { Vcsim, VcsimOptions } from './index.js';

/** Where a VM is registered: a compute resource (standalone host or cluster) and its ESXi host. */
export interface FleetHost {
  /** Standalone host or cluster name, e.g. 'DC0_H1' or 'DC0_C0'. */
  computeResource: string;
  /** The ESXi host name, e.g. 'DC0_H1' or 'DC0_C0_H1'. */
  host: string;
}

export interface FleetSpec {
  /** Number of VMs, named `${prefix}-01`, `${prefix}-02`, … (two digits at least). */
  count: number;
  /** Default 'fleet'. */
  prefix?: string;
  /** VM i goes to hosts[i % hosts.length]. Default: the standalone hosts of fleetVcsimOptions. */
  hosts?: readonly FleetHost[];
  /** VM i goes to datastores[⌊i / hosts.length⌋ % datastores.length], so every host has VMs on every datastore. Default LocalDS_0, LocalDS_1. */
  datastores?: readonly string[];
  /** Overrides per VM (index from 0): disks, cbt, powerOn, nics, guestId, … Applied over fleetVmDefaults(i). */
  vm?: (i: number) => Partial<TestVmSpec>;
  /** VMs created at once (default 8): vcsim runs SOAP calls one at a time, but the fixture's task polls and disk writes overlap. */
  parallel?: number;
}

export interface FleetVm extends TestVm {
  /** The ESXi host the VM is registered on (name). */
  host: string;
  computeResource: string;
  /** The datastore of its files and disks. */
  datastore: string;
  cbt: boolean;
  poweredOn: boolean;
}

/**
 * A simulator for a fleet, no model VMs: `hosts` (default 2) standalone ESXi hosts DC0_H0, DC0_H1, …
 * and no cluster; or with `cluster: true` one cluster DC0_C0 of that many hosts DC0_C0_H0, … and
 * no standalone host. `datastores` (default 2) LocalDS_0, LocalDS_1, …, shared by all hosts.
 */
export function fleetVcsimOptions(opts: { hosts?: number; datastores?: number; cluster?: boolean } = {}): Pick<VcsimOptions, 'datastores' | 'extraArgs'> {
  const hosts = String(opts.hosts ?? 2);
  const layout = opts.cluster ? ['-cluster', '1', '-host', hosts, '-standalone-host', '0'] : ['-cluster', '0', '-standalone-host', hosts];
  return { datastores: opts.datastores ?? 2, extraArgs: [...layout, '-vm', '0'] };
}

/** The standalone hosts fleetVcsimOptions makes. */
export function standaloneHosts(n = 2): FleetHost[] {
  return Array.from({ length: n }, (_, i) => ({ computeResource: `DC0_H${i}`, host: `DC0_H${i}` }));
}

/** The hosts of the cluster fleetVcsimOptions({ cluster: true }) makes. */
export function clusterHosts(n = 2): FleetHost[] {
  return Array.from({ length: n }, (_, i) => ({ computeResource: 'DC0_C0', host: `DC0_C0_H${i}` }));
}

/**
 * The default VM i: one 16 MiB disk (every third VM a second one of 8 MiB) holding 1 MiB of
 * pseudo-random data at offset 0 and 1 MiB at 8 MiB (the second disk: 1 MiB at 4 MiB), seeds
 * unique in the fleet; CBT on for even i; powered off.
 */
export function fleetVmDefaults(i: number): Pick<TestVmSpec, 'disks' | 'cbt' | 'powerOn'> {
  const MiB = 1 << 20;
  const disks: DiskSpec[] = [
    { sizeBytes: 16 * MiB, data: [{ offset: 0, length: MiB, seed: 10_000 + 10 * i }, { offset: 8 * MiB, length: MiB, seed: 10_001 + 10 * i }] },
  ];
  if (i % 3 === 2) disks.push({ sizeBytes: 8 * MiB, data: [{ offset: 4 * MiB, length: MiB, seed: 10_002 + 10 * i }] });
  return { disks, cbt: i % 2 === 0, powerOn: false };
}

export function fleetVmName(prefix: string, i: number, count: number): string {
  return `${prefix}-${String(i + 1).padStart(Math.max(2, String(count).length), '0')}`;
}

/** Creates the fleet; the VMs come back in index order. */
export async function createFleet(sim: Vcsim, spec: FleetSpec): Promise<FleetVm[]> {
  const prefix = spec.prefix ?? 'fleet';
  const hosts = spec.hosts ?? standaloneHosts();
  const datastores = spec.datastores ?? ['LocalDS_0', 'LocalDS_1'];
  if (hosts.length === 0 || datastores.length === 0) throw new Error('createFleet needs at least one host and one datastore');
  const out: FleetVm[] = new Array(spec.count);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < spec.count; i = next++) {
      const where = hosts[i % hosts.length]!;
      const datastore = datastores[Math.floor(i / hosts.length) % datastores.length]!;
      const vmSpec: TestVmSpec = {
        name: fleetVmName(prefix, i, spec.count),
        host: where.computeResource,
        esxHost: where.host,
        datastore,
        ...fleetVmDefaults(i),
        ...spec.vm?.(i),
      };
      const vm = await createTestVm(sim, vmSpec);
      out[i] = {
        ...vm,
        host: vmSpec.esxHost ?? vmSpec.host ?? 'DC0_H0',
        computeResource: vmSpec.host ?? 'DC0_H0',
        datastore: vmSpec.datastore ?? 'LocalDS_0',
        cbt: vmSpec.cbt ?? false,
        poweredOn: vmSpec.powerOn ?? false,
      };
    }
  };
  await Promise.all(Array.from({ length: Math.min(spec.parallel ?? 8, spec.count) }, worker));
  return out;
}
