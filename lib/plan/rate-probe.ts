// The rate probe of `plan estimate`: a short timed read of one disk per (ESXi host, datastore)
// that has no measured rate yet. Only what changes nothing on the source is read: a powered-off
// VM's flat disk through the datastore's /folder service (as the folder reader does). Never a
// snapshot, never an export lease, never a running VM's disk.

import { hasFlatFiles, openFolderReading } from '../input/index.js';
import { hostKey, type CopySample } from '../supervisor/index.js';
import type { VSphereClient, VmDisk, VmSummary } from '../vsphere/index.js';

/** Bytes one probe reads at most, in this many ranges at once (a run reads a disk in several too). */
export const PROBE_BYTES = 32 * 1024 * 1024;
export const PROBE_STREAMS = 4;
/** A probe stops after this long, with the rate of what it read. */
export const PROBE_MAX_MS = 3000;

export interface ProbeCandidate {
  readonly vm: VmSummary;
  readonly disk: VmDisk;
  readonly dcPath: string;
}

/**
 * A disk the probe may read for this host and datastore: of a powered-off VM without snapshots
 * (its disk is the file itself, not a delta), a flat disk on a datastore with files, the largest
 * first (a full probe); undefined when there is none.
 */
export function probeCandidate(
  all: readonly VmSummary[],
  host: string,
  datastore: string,
  place: { datastoreType(dc: string, name: string): string | undefined; dcPath(dc: string): string | undefined },
): ProbeCandidate | undefined {
  const found = all
    .filter((v) => v.powerState === 'poweredOff' && !v.hasSnapshots && hostKey(v.host) === host)
    .flatMap((vm) => vm.disks.filter((d) => d.datastoreName === datastore && d.backingType === 'VirtualDiskFlatVer2BackingInfo' && d.capacityBytes > 0).map((disk) => ({ vm, disk })))
    .filter(({ vm, disk }) => {
      // /folder serves flat files only: a datastore of unknown type is not tried.
      const type = place.datastoreType(vm.datacenter, disk.datastoreName);
      return type !== undefined && hasFlatFiles(type) && place.dcPath(vm.datacenter) !== undefined;
    })
    .sort((a, b) => b.disk.capacityBytes - a.disk.capacityBytes || a.vm.path.localeCompare(b.vm.path))[0];
  return found && { ...found, dcPath: place.dcPath(found.vm.datacenter)! };
}

/** Reads the start of the candidate's disk, timed; the sample is a folder read of its host and datastore, alone. */
export async function probeRate(vsphere: VSphereClient, c: ProbeCandidate, signal: AbortSignal): Promise<CopySample> {
  const [sample] = await probeTogether(vsphere, [c], signal);
  return sample!;
}

/**
 * Reads the candidates' disks all at once, as many reads as given (a candidate twice: two reads
 * of its disk, at different offsets), timed together: each sample carries how many of the reads
 * shared its host and the machine, so the rates tell what a host and this machine deliver to
 * that many reads at once.
 */
export async function probeTogether(vsphere: VSphereClient, reads: readonly ProbeCandidate[], signal: AbortSignal): Promise<CopySample[]> {
  const stop = AbortSignal.any([signal, AbortSignal.timeout(PROBE_MAX_MS)]);
  const seen = new Map<ProbeCandidate, number>();
  const perHost = new Map<string, number>();
  for (const c of reads) perHost.set(hostKey(c.vm.host), (perHost.get(hostKey(c.vm.host)) ?? 0) + 1);
  // All opened, or none left open: a refused one closes those that were.
  const opened = await Promise.allSettled(reads.map((c) => openFolderReading(vsphere, c.dcPath, c.disk)));
  const refused = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (refused) {
    await Promise.all(opened.map((o) => (o.status === 'fulfilled' ? o.value.close() : undefined)));
    throw refused.reason;
  }
  const readings = opened.map((o) => (o as PromiseFulfilledResult<Awaited<ReturnType<typeof openFolderReading>>>).value);
  const t0 = performance.now();
  try {
    const done = await Promise.all(
      reads.map(async (c, i) => {
        // Reads together go on until the time is up, so they share it throughout; another read of
        // the same disk starts further on, as a run's next disk would.
        const nth = seen.get(c) ?? 0;
        seen.set(c, nth + 1);
        const size = c.disk.capacityBytes;
        const total = Math.min(reads.length > 1 ? PROBE_BYTES * 8 : PROBE_BYTES, size);
        const from = Math.floor(((nth * PROBE_BYTES) % Math.max(1, size - total + 1)) / 512) * 512;
        const bytes = await readTimed(readings[i]!.source, from, total, signal, stop);
        return { bytes, ms: performance.now() - t0 };
      }),
    );
    const at = new Date().toISOString();
    const levels = reads.length > 1 ? (c: ProbeCandidate) => ({ hostLevel: perHost.get(hostKey(c.vm.host))!, totalLevel: reads.length }) : () => ({});
    return reads.map((c, i) => ({ host: hostKey(c.vm.host), datastore: c.disk.datastoreName, reader: 'folder', ...done[i]!, how: 'probe', at, ...levels(c) }));
  } finally {
    await Promise.all(readings.map((r) => r.close()));
  }
}

/** Bytes read of [from, from + total) in PROBE_STREAMS ranges at once, until done or `stop`. */
async function readTimed(source: Awaited<ReturnType<typeof openFolderReading>>['source'], from: number, total: number, signal: AbortSignal, stop: AbortSignal): Promise<number> {
  const piece = Math.ceil(total / PROBE_STREAMS);
  let bytes = 0;
  try {
    await Promise.all(
      Array.from({ length: PROBE_STREAMS }, async (_, i) => {
        const start = from + i * piece;
        const end = Math.min(from + total, start + piece);
        if (start >= end) return;
        for await (const chunk of await source.open(start, end, stop)) bytes += chunk.length;
      }),
    );
  } catch (err) {
    // Out of time: the rate of what arrived. Anything else (or the caller's abort) is a failure.
    if (signal.aborted || !stop.aborted || bytes === 0) throw err;
  }
  return bytes;
}
