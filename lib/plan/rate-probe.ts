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

/** Reads the start of the candidate's disk, timed; the sample is a folder read of its host and datastore. */
export async function probeRate(vsphere: VSphereClient, c: ProbeCandidate, signal: AbortSignal): Promise<CopySample> {
  const reading = await openFolderReading(vsphere, c.dcPath, c.disk);
  const total = Math.min(PROBE_BYTES, c.disk.capacityBytes);
  const piece = Math.ceil(total / PROBE_STREAMS);
  const stop = AbortSignal.any([signal, AbortSignal.timeout(PROBE_MAX_MS)]);
  let bytes = 0;
  const t0 = performance.now();
  try {
    await Promise.all(
      Array.from({ length: PROBE_STREAMS }, async (_, i) => {
        const start = i * piece;
        const end = Math.min(total, start + piece);
        if (start >= end) return;
        for await (const chunk of await reading.source.open(start, end, stop)) bytes += chunk.length;
      }),
    );
  } catch (err) {
    // Out of time: the rate of what arrived. Anything else (or the caller's abort) is a failure.
    if (signal.aborted || !stop.aborted || bytes === 0) throw err;
  } finally {
    await reading.close();
  }
  const ms = performance.now() - t0;
  return { host: hostKey(c.vm.host), datastore: c.disk.datastoreName, reader: 'folder', bytes, ms, how: 'probe', at: new Date().toISOString() };
}
