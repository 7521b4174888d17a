// One in-place conversion of a raw guest disk as oneswap runs it (lib/convert: overlay,
// virt-v2v-in-place, inspection, commit), for bench/convert.bench.ts to measure from outside.
//   node --import tsx bench/convert-one.ts DISK.raw WORKDIR LOGFILE
// Prints one JSON line: what the overlay held (data committed, free space trimmed), the overlay
// files' allocated size, and the guest facts.

import { stat } from 'node:fs/promises';
import { convertGuest, commitConversion } from '../lib/convert/index.js';

const [disk, workDir, logFile] = process.argv.slice(2);
if (!disk || !workDir || !logFile) throw new Error('usage: convert-one.ts DISK.raw WORKDIR LOGFILE');
const r = await convertGuest({
  name: 'bench-guest',
  firmware: 'bios',
  memoryMiB: 1024,
  cpus: 1,
  disks: [{ image: { filename: disk, format: 'raw' }, bus: 'scsi' }],
  nics: [],
  network: { nics: undefined, assign: async () => new Map() },
  workDir,
  logFile,
  signal: new AbortController().signal,
});
if (r.kind !== 'converted') throw new Error(`no OS: ${r.reason}`);
// Scratch space the conversion used: the overlay files as they stand before the commit.
let overlayFileBytes = 0;
for (const o of r.overlays) overlayFileBytes += (await stat(o.path)).blocks * 512;
await commitConversion(r.overlays);
process.stdout.write(`${JSON.stringify({ usage: r.usage, overlayFileBytes, facts: r.facts })}\n`);
