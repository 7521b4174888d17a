// Overlays and commits with the real qemu-img (and qemu-io to play the conversion's writes): the
// image stays untouched until the commit, the commit writes exactly the overlay's data, and a
// commit interrupted by a crash is finished by the next run from its marker.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile, access, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { createOverlay, overlayUsage, commitOverlay } from '../../lib/convert/overlay.js';
import { convertImages, sourceMacsNetwork } from '../../lib/supervisor/index.js';
import type { OneClient } from '../../lib/one/index.js';
import type { MigrationEvent } from '../../lib/supervisor/index.js';

const MiB = 1024 * 1024;
const sha = async (p: string): Promise<string> => createHash('sha256').update(await readFile(p)).digest('hex');

async function rawWithData(dir: string): Promise<string> {
  const base = join(dir, 'image.raw');
  await execa('truncate', ['-s', String(16 * MiB), base]);
  await execa('qemu-io', ['-f', 'raw', '-c', `write -P 0x11 0 ${4 * MiB}`, base]);
  return base;
}

test('an overlay takes every write; the image changes only at the commit, by the overlay data', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-overlay-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const base = await rawWithData(dir);
  const before = await sha(base);
  const ov = await createOverlay({ filename: base, format: 'raw' }, join(dir), 0);
  // What a conversion does: new data in one place, a discard (fstrim) of old data in another.
  await execa('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x22 ${8 * MiB} ${MiB}`, '-c', `write -z ${2 * MiB} ${MiB}`, ov.path]);
  assert.equal(await sha(base), before, 'the image is only read while the overlay is written');
  assert.deepEqual(await overlayUsage(ov), { dataBytes: MiB, zeroedBytes: MiB });
  await commitOverlay(ov);
  const after = await readFile(base);
  assert.ok(after.subarray(0, 2 * MiB).every((b) => b === 0x11));
  assert.ok(after.subarray(2 * MiB, 3 * MiB).every((b) => b === 0), 'discarded area reads as zeros');
  assert.ok(after.subarray(3 * MiB, 4 * MiB).every((b) => b === 0x11));
  assert.ok(after.subarray(8 * MiB, 9 * MiB).every((b) => b === 0x22));
  assert.ok((await stat(base)).blocks * 512 <= 5 * MiB, 'the commit keeps the image sparse');
});

test('a commit cut short by a crash is finished from its marker before anything else', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'oneswap-marker-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const base = await rawWithData(dir);
  const stateDir = join(dir, 'state');
  const work = join(stateDir, 'convert', 'images-7');
  await mkdir(work, { recursive: true });
  const ov = await createOverlay({ filename: base, format: 'raw' }, work, 0);
  await execa('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x33 0 ${MiB}`, ov.path]);
  const guest = { productName: 'Debian GNU/Linux 12 (bookworm)', distro: 'debian', osinfo: 'debian12', arch: 'x86_64', virtioBlock: true, virtioNet: true, firmware: 'bios' };
  await writeFile(join(work, 'commit.json'), JSON.stringify({ version: 1, imageIds: [7], overlays: [ov], guest, usage: { dataBytes: MiB, zeroedBytes: 0 } }));

  const updates: Array<{ id: number; xml: string }> = [];
  const one = { imageUpdate: async (id: number, tpl: { toXml(): string }) => void updates.push({ id, xml: tpl.toXml() }) } as unknown as OneClient;
  const events: MigrationEvent[] = [];
  const r = await convertImages(
    { one, emit: (e) => events.push(e), signal: new AbortController().signal },
    { vm: 'web01', images: [{ id: 7, image: { filename: base, format: 'raw' }, bus: 'scsi' }], firmware: 'bios', memoryMiB: 1024, cpus: 1, nics: [], network: sourceMacsNetwork([]), stateDir, logDir: join(dir, 'logs'), runId: 'r1' },
  );
  assert.equal(r.kind, 'converted');
  assert.ok(r.kind === 'converted' && r.resumedCommit);
  assert.ok((await readFile(base)).subarray(0, MiB).every((b) => b === 0x33), 'the pending commit was finished');
  assert.equal(updates.length, 1);
  assert.match(updates[0]!.xml, /<ONESWAP_STATE><!\[CDATA\[CONVERTED\]\]><\/ONESWAP_STATE>|<ONESWAP_STATE>CONVERTED<\/ONESWAP_STATE>/);
  assert.match(updates[0]!.xml, /DEV_PREFIX.*vd/);
  await assert.rejects(access(work), 'the work directory is gone');
  assert.ok(events.some((e) => e.type === 'log' && /finishing that commit/.test(e.message)));
});
