// Which reader a disk gets: ESXi's rules (no file download of a running VM's disks, no flat files
// on vSAN), the user's --transport, and what nbdkit offers here.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseReader, type DiskPlace, type Plugins, type ReaderSettings } from '../../lib/input/index.js';
import { OneswapError } from '../../lib/errors/index.js';

const place = (datastoreType: string): DiskPlace =>
  ({
    datastoreType,
    device: { key: 2000, label: 'Hard disk 1', capacityBytes: 1 << 30, fileName: '[ds1] web/web.vmdk', datastoreName: 'ds1', datastorePath: 'web/web.vmdk' },
  }) as unknown as DiskPlace;
const none: Plugins = { vddk: false, nfc: false };
const auto: ReaderSettings = { transport: 'auto' };

test('auto: VDDK when given and loadable, else nfc, else folder for a powered-off file disk, else an export lease', () => {
  assert.equal(chooseReader({ transport: 'auto', vddkLibdir: '/opt/vddk' }, { vddk: true, nfc: true }, place('VMFS'), true).reader, 'vddk');
  assert.equal(chooseReader({ transport: 'auto', vddkLibdir: '/opt/vddk' }, { vddk: false, nfc: true }, place('VMFS'), true).reader, 'nfc', 'an unusable VDDK falls back');
  assert.equal(chooseReader(auto, { vddk: true, nfc: false }, place('VMFS'), false).reader, 'folder', 'no libdir: no vddk');
  assert.equal(chooseReader(auto, none, place('NFS'), false).reader, 'folder');
  const running = chooseReader(auto, none, place('VMFS'), true);
  assert.equal(running.reader, 'lease');
  assert.match(running.why, /ESXi refuses a file download of a running VM.s disks; no VDDK given \(--vddk-libdir\)/);
  const vsan = chooseReader(auto, none, place('vsan'), false);
  assert.equal(vsan.reader, 'lease');
  assert.match(vsan.why, /datastore ds1 is vsan, which keeps disks as objects, not files/);
});

test('an explicit --transport that ESXi (or this machine) cannot serve is a usage error, before anything is created', () => {
  const refused = (s: ReaderSettings, p: Plugins, d: DiskPlace, running: boolean, re: RegExp): void => {
    assert.throws(() => chooseReader(s, p, d, running), (e: unknown) => e instanceof OneswapError && e.kind === 'usage' && re.test(e.message));
  };
  refused({ transport: 'folder' }, none, place('VMFS'), true, /--transport folder cannot read \[ds1\] web\/web.vmdk: the VM runs/);
  refused({ transport: 'folder' }, none, place('vsan'), false, /keeps disks as objects/);
  refused({ transport: 'vddk' }, { vddk: true, nfc: false }, place('VMFS'), false, /--transport vddk needs VMware.s VDDK/);
  refused({ transport: 'vddk', vddkLibdir: '/nope' }, none, place('VMFS'), false, /cannot load its vddk plugin with the VDDK in \/nope/);
  refused({ transport: 'nfc' }, none, place('VMFS'), false, /no nfc plugin/);
  assert.equal(chooseReader({ transport: 'folder' }, none, place('VMFS'), false).reader, 'folder');
  assert.equal(chooseReader({ transport: 'lease' }, none, place('VMFS'), false).reader, 'lease', 'a lease serves a powered-off VM too (ExportVm)');
});
