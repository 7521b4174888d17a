// npm run bench:convert — guest conversion of the real Debian test guest (test/peers/guest, built
// and cached on first use), in one run on this machine:
//   oneswap     in place on the image file: qcow2 overlay, virt-v2v-in-place, inspection, commit
//   virt-v2v    `virt-v2v -i disk -o local`, the copying conversion: writes a whole new disk
// Prints wall time, CPU, peak RSS, the bytes each writes into the disk the VM will use (oneswap:
// the overlay data committed into the image; virt-v2v: the new disk it writes) and the scratch
// space each needs (oneswap: the overlay file). Bytes are read off the files, not off /proc io:
// both tools write through qemu and nbdkit processes that are not children of the command.
// The libguestfs appliance is built before the contenders run, so neither pays for that.
// About 5 minutes without KVM (both run under TCG emulation), plus the
// guest build the first time.

import { mkdtemp, mkdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { applianceEnv } from '../lib/convert/appliance.js';
import { testGuest } from '../test/peers/guest/index.js';
import { REPO_ROOT } from '../test/peers/cli.js';
import { measure, type Measurement } from './measure.js';

const MiB = 1024 ** 2;

async function main(): Promise<void> {
  const guest = await testGuest();
  const work = await mkdtemp(join(tmpdir(), 'oneswap-bench-convert-'));
  // Both contenders get the appliance settings oneswap uses (direct backend; emulated where KVM is broken).
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(await applianceEnv({}))) if (v !== undefined) env[k] = v;
  try {
    process.stderr.write('bench: warming the libguestfs appliance (not measured)\n');
    await execa('guestfish', ['-a', '/dev/null', 'run'], { env });

    const image = join(work, 'image.raw');
    await execa('cp', ['--sparse=always', guest, image]);
    await execa('sync');
    const zero = { network: () => 0, serverCpu: () => 0, timeoutMs: 30 * 60_000 };
    process.stderr.write('bench: oneswap in place\n');
    const ours = await measure(
      'oneswap: in place (overlay + commit)',
      `node --import tsx ${join(REPO_ROOT, 'bench', 'convert-one.ts')} ${image} ${join(work, 'overlay')} ${join(work, 'oneswap.log')} > ${join(work, 'oneswap.json')} && sync ${image}`,
      { ...zero, env },
    );
    const facts = ours.ok ? (JSON.parse(await readFile(join(work, 'oneswap.json'), 'utf8')) as { usage: { dataBytes: number; zeroedBytes: number }; overlayFileBytes: number; facts: { productName: string; virtioBlock: boolean } }) : undefined;

    await execa('sync');
    const out = join(work, 'v2v-out');
    await mkdir(out);
    process.stderr.write('bench: virt-v2v -i disk -o local\n');
    const theirs = await measure(
      'virt-v2v -i disk -o local (copies)',
      `virt-v2v -i disk -if raw ${guest} -o local -os ${out} -of raw -on bench > ${join(work, 'v2v.log')} 2>&1 && sync ${out}/bench-sda`,
      { ...zero, env },
    );

    const newDisk = theirs.ok ? Number((await execa('du', ['-B1', join(out, 'bench-sda')])).stdout.split('\t')[0]) : NaN;
    const rows: Array<[Measurement, string, string]> = [
      [ours, facts ? `${(facts.usage.dataBytes / MiB).toFixed(0)} (+${(facts.usage.zeroedBytes / MiB).toFixed(0)} trimmed to holes)` : '-', facts ? (facts.overlayFileBytes / MiB).toFixed(0) : '-'],
      [theirs, `${(newDisk / MiB).toFixed(0)} (a new disk)`, '0'],
    ];
    const head = ['contender', 'wall s', 'CPU s', 'written into the VM disk, MiB', 'scratch MiB', 'peak RSS MiB', 'status'];
    const body = rows.map(([m, written, scratch]) => [m.name, m.wallSeconds.toFixed(1), m.cpuSeconds.toFixed(1), written, scratch, (m.peakRssBytes / MiB).toFixed(0), m.ok ? 'ok' : `FAILED: ${m.note ?? ''}`]);
    const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
    const line = (cells: string[]): string => `| ${cells.map((c, i) => (i === 0 || i === 6 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
    const allocated = Number((await execa('du', ['-B1', guest])).stdout.split('\t')[0]);
    const lines = [
      `oneswap bench:convert — Debian 12 test guest, 3 GiB disk, ${(allocated / MiB).toFixed(0)} MiB allocated; no KVM (TCG)`,
      '',
      line(head),
      `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
      ...body.map(line),
      '',
      ours.ok && theirs.ok && facts
        ? `oneswap wrote ${(facts.usage.dataBytes / newDisk).toFixed(3)}x the bytes of virt-v2v -o local into the VM's disk and took ${(ours.wallSeconds / theirs.wallSeconds).toFixed(2)}x its time (its time includes the inspection of the result)`
        : 'a contender failed: no ratios',
      facts ? `guest found: ${facts.facts.productName}; virtio-blk ${facts.facts.virtioBlock ? 'present' : 'absent'} after conversion` : '',
      'in place, the copy made by the import stays where it is: only the changed clusters move; -o local rewrites every allocated byte of the guest',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode ||= 1;
});
