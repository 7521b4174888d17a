import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseVmdkDescriptor, vmdkKind } from '../../lib/input/index.js';

const flat = `# Disk DescriptorFile
version=1
CID=12345678
parentCID=ffffffff
createType="monolithicFlat"

# Extent description
RW 32768 FLAT "disk1-flat.vmdk" 0

ddb.virtualHWVersion = "4"
`;

test('monolithicFlat and ESXi vmfs descriptors', () => {
  const d = parseVmdkDescriptor(flat, 'd.vmdk');
  assert.equal(d.createType, 'monolithicFlat');
  assert.deepEqual(d.extents, [{ kind: 'FLAT', size: 16 * 1024 * 1024, file: 'disk1-flat.vmdk', fileOffset: 0 }]);
  const vmfs = parseVmdkDescriptor('createType="vmfs"\nparentCID=ffffffff\nRW 2048 VMFS "x-flat.vmdk"\n', 'x.vmdk');
  assert.equal(vmfs.capacityBytes, 1024 * 1024);
  assert.equal(vmdkKind(Buffer.from(flat)), 'descriptor');
  assert.equal(vmdkKind(Buffer.from('KDMV\u0001')), 'hosted-sparse');
  assert.equal(vmdkKind(Buffer.from('COWD')), 'vmfs-sparse');
});

test('twoGbMaxExtentFlat: several extents laid end to end', () => {
  const d = parseVmdkDescriptor('createType="twoGbMaxExtentFlat"\nRW 4 FLAT "a-f001.vmdk" 0\nRW 2 FLAT "a-f002.vmdk" 0\nRW 2 ZERO\n', 'a.vmdk');
  assert.equal(d.capacityBytes, 8 * 512);
  assert.deepEqual(d.extents.map((e) => e.kind), ['FLAT', 'FLAT', 'ZERO']);
});

test('refuses sparse, deltas and extents outside the folder', () => {
  assert.throws(() => parseVmdkDescriptor('createType="vmfsSparse"\nRW 10 VMFSSPARSE "a-delta.vmdk"\n', 'a.vmdk'), (e: Error & { kind?: string }) => e.kind === 'data' && /VMFSSPARSE/.test(e.message));
  assert.throws(() => parseVmdkDescriptor('parentCID=abcdef01\ncreateType="vmfs"\nRW 10 VMFS "a-flat.vmdk"\n', 'a.vmdk'), /snapshot delta/);
  assert.throws(() => parseVmdkDescriptor('createType="vmfs"\nRW 10 VMFS "../etc/passwd"\n', 'a.vmdk'), /outside/);
  assert.throws(() => parseVmdkDescriptor('createType="vmfs"\n', 'a.vmdk'), /no extents/);
});
