// The lease session with a fake lease (no simulator): device URLs matched by controller and unit
// (ESXi's and the simulator's key forms), keep-alives with a growing percent and none after the
// end, and a keep-alive that faults mid-disk stopping the copy with one line naming the disk.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { OneswapError } from '../../lib/errors/index.js';
import { openLease } from '../../lib/input/reader-lease.js';
import type { ExportLease, ExportLeaseInfo, LeaseDevice, LeaseDownload, VmDisk, VSphereClient } from '../../lib/vsphere/index.js';
import { MemoryTarget } from '../support/memory-target.js';
import { refusal } from '../support/refusal.js';
import { withTempDir } from '../support/temp-dir.js';

const MiB = 1024 * 1024;

function disk(key: number, controllerKey: number, unit: number, file: string, capacityBytes = 2 * MiB): VmDisk {
  return {
    key,
    label: `Hard disk ${key}`,
    capacityBytes,
    controller: { key: controllerKey, kind: 'scsi', model: 'VirtualLsiLogicController', busNumber: 0 },
    unitNumber: unit,
    fileName: `[ds] ${file}`,
    datastoreName: 'ds',
    datastorePath: file,
    diskMode: 'persistent',
    thinProvisioned: true,
    backingType: 'VirtualDiskFlatVer2BackingInfo',
  };
}

interface FakeLease {
  readonly calls: string[];
  readonly percents: number[];
  readonly lease: ExportLease;
}

/** A lease whose downloads give `body(device)` and whose keep-alive fails from call `failAt` on. */
function fakeLease(devices: LeaseDevice[], body: (d: LeaseDevice) => AsyncIterable<Uint8Array>, failAt = Infinity): FakeLease {
  const calls: string[] = [];
  const percents: number[] = [];
  const info: ExportLeaseInfo = { devices, totalDiskCapacityInKB: 0, leaseTimeoutSec: 300 };
  const lease = {
    ref: { type: 'HttpNfcLease', value: 'lease-1' },
    what: 'the export lease lease-1 of VM vm-1',
    info,
    progress: async (p: number) => {
      calls.push('progress');
      percents.push(p);
      if (percents.length >= failAt) throw new OneswapError('remote', 'HttpNfcLeaseProgress failed: Timedout: The lease timed out');
    },
    complete: async () => void calls.push('complete'),
    abort: async (m?: string) => void calls.push(`abort: ${m ?? ''}`),
    state: async () => ({ state: 'ready' as const }),
    download: async (d: LeaseDevice): Promise<LeaseDownload> => {
      calls.push(`download ${d.targetId}`);
      let received = 0;
      const src = body(d);
      return {
        size: d.fileSize,
        get bytesReceived() {
          return received;
        },
        body: (async function* () {
          for await (const c of src) {
            received += c.length;
            yield c;
          }
        })(),
      };
    },
  } as unknown as ExportLease;
  return { calls, percents, lease };
}

function clientWith(lease: ExportLease): VSphereClient {
  return { exportVm: async () => lease, exportSnapshot: async () => lease } as unknown as VSphereClient;
}

async function* nothing(): AsyncGenerator<Uint8Array> {}

const device = (key: string, targetId: string, fileSize?: number): LeaseDevice => ({ key, url: `https://*/nfc/x/${targetId}`, targetId, disk: true, ...(fileSize === undefined ? {} : { fileSize }) });

/** A 2 MiB disk with data, as a qemu-img streamOptimized VMDK. */
async function streamOf(dir: string): Promise<Buffer> {
  const raw = Buffer.alloc(2 * MiB);
  for (let i = 0; i < raw.length; i += 7919) raw[i] = (i % 251) + 1;
  await writeFile(join(dir, 'd.raw'), raw);
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', join(dir, 'd.raw'), join(dir, 'd.vmdk')]);
  return readFile(join(dir, 'd.vmdk'));
}

/** `buf` in `pieces` pieces, `ms` apart. */
async function* slowly(buf: Buffer, pieces: number, ms: number): AsyncGenerator<Uint8Array> {
  const n = Math.ceil(buf.length / pieces);
  for (let at = 0; at < buf.length; at += n) {
    await new Promise((r) => setTimeout(r, ms));
    yield buf.subarray(at, at + n);
  }
}

test('device URLs are matched by controller and unit, in ESXi\'s and the simulator\'s key forms', async () => {
  const disks = [disk(2000, 1000, 0, 'a/a.vmdk'), disk(2001, 1000, 1, 'a/a_1.vmdk')];
  const f = fakeLease([device('/vm-1/VirtualLsiLogicController0:1', 'b'), device('/vm-1/1000:0', 'a'), { ...device('/vm-1/nvram', 'nvram'), disk: false }], nothing);
  const session = await openLease(clientWith(f.lease), { vm: { type: 'VirtualMachine', value: 'vm-1' } }, disks, { vmName: 'v' });
  assert.deepEqual([...session.disks.keys()], [2000, 2001]);
  assert.deepEqual([...session.disks.values()].map((r) => [r.name, r.reader, r.access]), [['[ds] a/a.vmdk', 'lease', 'stream'], ['[ds] a/a_1.vmdk', 'lease', 'stream']]);
  await session.abort();

  const none = fakeLease([device('/vm-1/VirtualLsiLogicController1:0', 'x'), device('/vm-1/VirtualLsiLogicController1:1', 'y')], nothing);
  const err = await refusal(openLease(clientWith(none.lease), { vm: { type: 'VirtualMachine', value: 'vm-1' } }, disks, { vmName: 'v' }));
  assert.equal(err.kind, 'remote');
  assert.match(err.message, /^the export lease of VM v has no device URL for disk \[ds\] a\/a\.vmdk \(controller 1000, unit 0\); its keys: /);
  assert.match(none.calls.at(-1) ?? '', /^abort: the export lease of VM v has no device URL/);
});

test('keep-alives carry the share streamed and stop at the end; complete after the disk', async () => {
  await withTempDir('oneswap-lease-unit-', async (dir) => {
    const vmdk = await streamOf(dir);
    const f = fakeLease([device('/vm-1/1000:0', 'a', vmdk.length)], () => slowly(vmdk, 8, 60));
    const session = await openLease(clientWith(f.lease), { vm: { type: 'VirtualMachine', value: 'vm-1' } }, [disk(2000, 1000, 0, 'a/a.vmdk')], { vmName: 'v', keepAliveMs: 40 });
    const target = new MemoryTarget(2 * MiB);
    const stats = await session.disks.get(2000)!.copyInto({ target, capacity: 2 * MiB, areas: [{ start: 0, length: 2 * MiB }], targetIsZero: true, signal: new AbortController().signal });
    assert.equal(stats.bytesRead, vmdk.length);
    assert.equal(stats.requests, 1);
    await session.complete();
    const after = f.percents.length;
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(f.percents.length, after, 'no keep-alive after complete');
    assert.ok(f.percents.length >= 4, `keep-alives: ${f.percents.join(',')}`);
    assert.deepEqual([...f.percents].sort((a, b) => a - b), f.percents, 'the percent grows');
    assert.ok(f.percents.at(-1)! > 0 && f.percents.at(-1)! <= 99, f.percents.join(','));
    assert.deepEqual(f.calls.filter((c) => !c.startsWith('progress')), ['download a', 'complete']);
  });
});

test('a keep-alive that faults mid-disk stops the copy with one line naming the disk, and aborts the lease', async () => {
  await withTempDir('oneswap-lease-unit-', async (dir) => {
    const vmdk = await streamOf(dir);
    const f = fakeLease([device('/vm-1/1000:0', 'a')], () => slowly(vmdk, 50, 40), 3);
    const session = await openLease(clientWith(f.lease), { vm: { type: 'VirtualMachine', value: 'vm-1' } }, [disk(2000, 1000, 0, 'a/a.vmdk')], { vmName: 'v', keepAliveMs: 50 });
    const target = new MemoryTarget(2 * MiB);
    const err = await refusal(session.disks.get(2000)!.copyInto({ target, capacity: 2 * MiB, areas: [{ start: 0, length: 2 * MiB }], targetIsZero: true, signal: new AbortController().signal }));
    assert.equal(err.kind, 'remote');
    assert.match(err.message, /^the export lease for disk \[ds\] a\/a\.vmdk of VM v expired after \d+ s, \d+ bytes had arrived: the keep-alive failed: HttpNfcLeaseProgress failed: Timedout/);
    assert.ok(!err.message.includes('\n'));
    assert.equal(f.calls.filter((c) => c.startsWith('abort')).length, 1);
    await session.abort();
    assert.equal(f.calls.filter((c) => c.startsWith('abort')).length, 1, 'abort is sent once');
  });
});
