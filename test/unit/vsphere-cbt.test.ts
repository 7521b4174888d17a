import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { collectChangedAreas, readDiskChangeInfo, type DiskChangeInfo } from '../../lib/vsphere/cbt.js';
import { parseSoapResponse } from '../../lib/vsphere/soap-envelope.js';
import type { Extent } from '../../lib/vsphere/types.js';

const MiB = 1024 * 1024;

/** A disk whose changed areas are known; answers like ESXi with a bounded window per call. */
function windowedServer(areas: Extent[], capacity: number, window: number) {
  const asked: number[] = [];
  const query = async (startOffset: number): Promise<DiskChangeInfo> => {
    asked.push(startOffset);
    const length = Math.min(window, capacity - startOffset);
    const end = startOffset + length;
    const changedArea = areas
      .filter((a) => a.start < end && a.start + a.length > startOffset)
      .map((a) => {
        const s = Math.max(a.start, startOffset);
        return { start: s, length: Math.min(a.start + a.length, end) - s };
      });
    return { startOffset, length, changedArea };
  };
  return { query, asked };
}

describe('QueryChangedDiskAreas paging', () => {
  it('continues at startOffset + length until the capacity and merges areas split by windows', async () => {
    const capacity = 16 * MiB;
    const areas = [
      { start: 0, length: 65536 },
      { start: MiB - 65536, length: 2 * 65536 }, // crosses the 1 MiB window boundary
      { start: 16 * MiB - 65536, length: 65536 },
    ];
    const server = windowedServer(areas, capacity, MiB);
    const got = await collectChangedAreas(capacity, server.query, 'disk 2000');
    assert.deepEqual(server.asked, Array.from({ length: 16 }, (_, i) => i * MiB));
    assert.deepEqual(got, areas);
  });

  it('handles a last window shorter than the others (capacity not a multiple of the window)', async () => {
    const capacity = 10 * MiB + 4096;
    const server = windowedServer([{ start: 10 * MiB, length: 4096 }], capacity, 4 * MiB);
    assert.deepEqual(await collectChangedAreas(capacity, server.query, 'd'), [{ start: 10 * MiB, length: 4096 }]);
    assert.deepEqual(server.asked, [0, 4 * MiB, 8 * MiB]);
  });

  it('keeps asking after an empty window: an empty answer says nothing about the rest', async () => {
    const capacity = 3 * MiB;
    const server = windowedServer([{ start: 2 * MiB + 512, length: 512 }], capacity, MiB);
    assert.deepEqual(await collectChangedAreas(capacity, server.query, 'd'), [{ start: 2 * MiB + 512, length: 512 }]);
    assert.equal(server.asked.length, 3);
  });

  it('asks once when one answer covers the whole disk', async () => {
    const server = windowedServer([{ start: 4096, length: 4096 }], MiB, Number.MAX_SAFE_INTEGER);
    await collectChangedAreas(MiB, server.query, 'd');
    assert.deepEqual(server.asked, [0]);
  });

  it('refuses an answer that does not advance or that skips part of the disk', async () => {
    const stuck = async (startOffset: number): Promise<DiskChangeInfo> => ({ startOffset, length: 0, changedArea: [] });
    await assert.rejects(collectChangedAreas(MiB, stuck, 'disk 2000 of VM vm-1'), (e: unknown) => e instanceof OneswapError && e.kind === 'remote' && /disk 2000 of VM vm-1/.test(e.message));
    const skipping = async (startOffset: number): Promise<DiskChangeInfo> => ({ startOffset: startOffset + 4096, length: 4096, changedArea: [] });
    await assert.rejects(collectChangedAreas(MiB, skipping, 'd'), OneswapError);
  });

  it('reads a DiskChangeInfo answer', () => {
    const r = parseSoapResponse(
      '<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>' +
        '<QueryChangedDiskAreasResponse xmlns="urn:vim25"><returnval><startOffset>0</startOffset><length>16777216</length>' +
        '<changedArea><start>0</start><length>65536</length></changedArea><changedArea><start>1048576</start><length>262144</length></changedArea>' +
        '</returnval></QueryChangedDiskAreasResponse></soapenv:Body></soapenv:Envelope>',
    );
    assert.equal(r.kind, 'result');
    const info = readDiskChangeInfo(r.kind === 'result' ? r.returnvals[0] : undefined);
    assert.deepEqual(info, { startOffset: 0, length: 16777216, changedArea: [{ start: 0, length: 65536 }, { start: 1048576, length: 262144 }] });
    // One area: a bare element, not a list.
    const one = readDiskChangeInfo({ startOffset: '0', length: '10', changedArea: { start: '2', length: '3' } });
    assert.deepEqual(one.changedArea, [{ start: 2, length: 3 }]);
  });
});

