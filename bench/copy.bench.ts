// npm run bench:copy — cold import of a 4 GiB disk with about 25 % data, against its baselines, in
// one run on this machine:
//   curl          one GET of the flat file (the line-rate reference), to /dev/null
//   qemu-img      qemu-img convert from the HTTPS URL into a raw file
//   nbdcopy       nbdcopy over nbdkit's curl plugin into a raw file
//   incumbent     download to a work directory, qemu-img convert to qcow2, copy into the datastore
//   oneswap       `oneswap import` with CBT on (only data travels) and with CBT off, through
//                 datastore HTTP (/folder); with CBT on also through an export lease (one
//                 streamOptimized stream) and through the VDDK stand-in (nbdkit over NBD)
// Then the same import into a qcow2 and into a Ceph datastore against qemu-img and the
// incumbent's path for each (datastore-targets.ts).
// Prints wall time, CPU (contender and simulator), bytes over the network, bytes written to disk
// and peak RSS, checks every output file against the source disk, then the issue's targets as
// PASS/MISS and notes. Every contender that writes an image ends with it fsynced. About 15
// minutes on a quiet machine.
//
// The simulator paces each /folder and export-lease download to BENCH_STREAM_MIBPS (default
// 128 MiB/s): real datastore HTTP gives one stream far less than the link (hostd streams each
// request on its own; 41-60 MiB/s measured through vCenter, ~140 MB/s for one VDDK stream:
// reference peers 4.2, 9), which is what makes a single curl the line-rate reference. The VDDK
// stand-in's reads (/nfc-disk) are not paced. BENCH_STREAM_MIBPS=0 removes the pacing: on
// loopback every contender is then bound by this machine's CPU instead.
// BENCH_DISK_GIB (default 4) and BENCH_DATA_PERCENT (default 25) change the disk;
// BENCH_TARGET_RUNS (default 2) sets the runs of each qcow2 and Ceph contender (the best kept);
// BENCH_PROXY=1 sends every contender through the counting TCP proxy (test/peers/net) instead of
// straight to the simulator; BENCH_STREAMS passes --streams to oneswap.

import { readFileSync } from 'node:fs';
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { startVcsim } from '../test/peers/vcsim/index.js';
import { createTestVm, client as vimClient, moref, ref, simStats, type SimStats, type VimClient, type MoRef } from '../test/peers/vcsim/fixture.js';
import { vddkStandin } from '../test/peers/vddk/index.js';
import { startOned } from '../test/peers/one/index.js';
import { startTcpProxy, type TcpProxy } from '../test/peers/net/tcp-proxy.js';
import { REPO_ROOT } from '../test/peers/cli.js';
import { cpuSeconds, measure, table, type Measurement, type MeasureOptions } from './measure.js';
import { check, compareImage, qcow2Matches, ratio, sha256Prefix } from './output-check.js';
import { datastoreTargets, imagesNamed } from './datastore-targets.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const size = Number(process.env.BENCH_DISK_GIB ?? 4) * GiB;
const percent = Number(process.env.BENCH_DATA_PERCENT ?? 25);
const useProxy = process.env.BENCH_PROXY === '1';
const streamsArg = process.env.BENCH_STREAMS;
const streamMiBps = Number(process.env.BENCH_STREAM_MIBPS ?? 128);
const islands = 16;
const islandBytes = Math.floor((size * percent) / 100 / islands / MiB) * MiB;
/** qemu-img -m 8 moving no byte for this long is hung (its curl driver can be), not slow. */
const STALL_MS = 10_000;

/** Bytes a process has passed to write(2)/send(2) so far (/proc/PID/io wchar). */
function wchar(pid: number): number {
  return Number(/^wchar:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? NaN);
}

/** Seconds the simulator takes to create and remove a snapshot of a VM (CBT: it hashes the disks). */
async function snapshotSeconds(vim: VimClient, vm: MoRef): Promise<number> {
  const t0 = process.hrtime.bigint();
  const snap = moref(await vim.task('CreateSnapshot_Task', `${ref(vm)}<name>bench-timing</name><memory>false</memory><quiesce>false</quiesce>`));
  await vim.task('RemoveSnapshot_Task', `${ref(snap)}<removeChildren>false</removeChildren>`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'oneswap-bench-copy-'));
  const rate = Math.round(streamMiBps * MiB);
  const sim = await startVcsim(streamMiBps > 0 ? { folderRate: rate, nfcRate: rate } : {});
  const vddk = await vddkStandin();
  let proxy: TcpProxy | undefined;
  const oned = await startOned({ asyncDelayMs: 50, dataDir: join(work, 'one') });
  try {
    if (useProxy) proxy = await startTcpProxy(sim.port);
    const port = proxy?.port ?? sim.port;
    // Bytes over the network: through the proxy, both directions as counted there; otherwise the
    // bytes the simulator wrote to its sockets (its wchar; the simulator writes no files while
    // serving, and its log lines are subtracted). That equals the proxy's "down" count to the
    // byte, without a user-space relay in the data path. An export lease is the exception: the
    // simulator writes the streamOptimized files first (see the lease row).
    const network = (): number => (proxy ? proxy.counters.down + proxy.counters.up : wchar(sim.pid) - sim.stderr().length);
    const serverCpu = (): number => cpuSeconds(sim.pid) + (proxy ? process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6 : 0);

    const dsId = await oned.createDatastore({ name: 'bench', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared' });
    oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 16 }] });
    const data = Array.from({ length: islands }, (_, i) => ({ offset: Math.floor((i * size) / islands / MiB) * MiB + 4 * MiB, length: islandBytes }));
    process.stderr.write(`bench: creating two VMs with a ${size / GiB} GiB disk and ${(islands * islandBytes) / MiB} MiB of data each\n`);
    const vmCbt = await createTestVm(sim, { name: 'bench-cbt', cbt: true, disks: [{ sizeBytes: size, data }], nics: [{ network: 'VM Network' }] });
    await createTestVm(sim, { name: 'bench-plain', cbt: false, disks: [{ sizeBytes: size, data }], nics: [{ network: 'VM Network' }] });
    const disk = vmCbt.disks[0]!;
    const dataBytes = disk.dataBytes;

    const vim = await vimClient(sim);
    const flatName = disk.fileName.replace(/^\[[^\]]+\] /, '').replace(/\.vmdk$/, '-flat.vmdk');
    const url = `https://127.0.0.1:${port}/folder/${flatName}?dcPath=DC0&dsName=LocalDS_0`;
    const headers = join(work, 'headers');
    await writeFile(headers, `Cookie: ${vim.cookie}\n`, { mode: 0o600 });
    const cookie = vim.cookie;
    const auth = join(work, 'one_auth');
    await writeFile(auth, `${oned.adminSession}\n`, { mode: 0o600 });
    const out = join(work, 'out');
    await mkdir(out);
    const dsDir = oned.datastore(dsId)!.basePath ?? join(work, 'one');
    const env = { CURL_CA_BUNDLE: sim.certFile };
    const oneswapEnv = {
      ONE_AUTH: auth,
      ONESWAP_VCENTER_PASSWORD: sim.password,
      ONESWAP_STATE_DIR: join(work, 'state'),
      HOME: work,
    };
    const oneswapCmd = (vm: string, prefix: string, reader = '', to: { datastore: number; endpoint: string } = { datastore: dsId, endpoint: oned.endpoint }): string =>
      `node ${join(REPO_ROOT, 'dist/lib/cli/main.js')} import ${reader} --vcenter 127.0.0.1:${port} --user ${sim.username} --thumbprint ${sim.thumbprintSha256} ` +
      `--datastore ${to.datastore} --endpoint ${to.endpoint} --no-convert --progress plain --log-dir ${join(work, 'logs', prefix)} ` +
      `${streamsArg ? `--streams ${streamsArg} ` : ''}--name-prefix ${prefix} ${vm}`;
    // qemu's curl block driver, read through its own JSON options: the cookie goes in its own
    // option; readahead 4 MiB (qemu-img convert reads at most 2 MiB at a time, each a request).
    const qemuJson = (u: string): string =>
      `'json:${JSON.stringify({ 'file.driver': 'https', 'file.url': u, 'file.sslverify': 'off', 'file.cookie': cookie, 'file.readahead': 4 * MiB })}'`;

    // Machine condition: on some VMs new page-cache pages are faulted in by the host on first
    // touch, which makes every contender that writes pay far more CPU than one that does not.
    await execa('sync');
    const calib = join(work, 'page-cache-calibration');
    const t0 = process.hrtime.bigint();
    await execa('dd', ['if=/dev/zero', `of=${calib}`, 'bs=1M', 'count=512', 'status=none']);
    const pageCacheSecondsPerGiB = (2 * Number(process.hrtime.bigint() - t0)) / 1e9;
    await rm(calib, { force: true });

    const rows: Measurement[] = [];
    const notes: string[] = [];
    const run = async (name: string, cmd: string, extra: Partial<MeasureOptions> = {}): Promise<Measurement> => {
      process.stderr.write(`bench: ${name}\n`);
      await execa('sync'); // start each contender without the previous one's dirty pages
      const m = await measure(name, cmd, { env, network, serverCpu, timeoutMs: 10 * 60_000, ...extra });
      if (!m.ok) process.stderr.write(`bench: ${name} FAILED: ${m.note}\n`);
      return m;
    };
    const keep = async (m: Measurement, check?: () => Promise<string>): Promise<Measurement> => {
      if (m.ok && check) m.check = await check();
      else m.check = m.ok ? 'n/a' : '-';
      rows.push(m);
      if (!m.ok) notes.push(`${m.name}: FAILED, ${m.note}`);
      await rm(out, { recursive: true, force: true });
      await mkdir(out);
      return m;
    };

    // Every contender that produces an image ends with it on stable storage: oneswap fdatasyncs
    // its images itself; the baselines get `sync FILE` (fsync) appended.
    const curl = await keep(await run('curl (line rate, to /dev/null)', `curl -sS --fail -H @${headers} -o /dev/null '${url}'`));

    // qemu-img convert from the URL with `output` (format options and target): the default -m 8
    // first; a transfer that stops for STALL_MS is qemu's hang, not slowness; `undo` removes what
    // the hung run left before the -m 1 rerun. Once it has hung, later runs take -m 1 at once.
    let qemuHung = false;
    const qemuFromUrl = async (name: string, output: string, after: string, undo: () => Promise<unknown>, extra: Partial<MeasureOptions> = {}): Promise<Measurement> => {
      const cmd = (coroutines: string): string => `qemu-img convert ${coroutines}-f raw ${qemuJson(url)} ${output}${after}`;
      const oneByOne = (): Promise<Measurement> => run(name.replace('qemu-img convert', 'qemu-img convert -m 1'), cmd('-m 1 '), extra);
      if (qemuHung) return oneByOne();
      const first = await run(name, cmd(''), { ...extra, stallMs: STALL_MS });
      if (first.ok) return first;
      notes.push(`${name} (default -m 8 coroutines) ${first.note} after ${first.wallSeconds.toFixed(0)} s; qemu 7.2's curl driver hangs with parallel requests, so the row is its -m 1 rerun (and later qemu-img rows run -m 1 at once)`);
      qemuHung = true;
      await undo();
      return oneByOne();
    };
    const qemu = await keep(
      await qemuFromUrl('qemu-img convert https → raw', `-O raw ${out}/disk.raw`, ` && sync ${out}/disk.raw`, () => rm(join(out, 'disk.raw'), { force: true })),
      () => compareImage(join(out, 'disk.raw'), 'raw', disk.flatPath),
    );

    // nbdkit 1.32's curl plugin serializes requests, so nbdcopy's parallel requests queue; 4 MiB
    // requests (instead of 256 KiB) make it about twice as fast here.
    const nbd = await keep(
      await run(
        'nbdcopy over nbdkit curl',
        `nbdkit -U - curl url='${url}' cookie='${cookie}' sslverify=false --run 'nbdcopy --request-size=${4 * MiB} "$uri" ${out}/disk.raw' && sync ${out}/disk.raw`,
      ),
      () => compareImage(join(out, 'disk.raw'), 'raw', disk.flatPath),
    );
    notes.push('nbdcopy: --request-size=4 MiB (nbdkit 1.32 curl plugin: thread model serialize_requests, one request at a time)');

    // The incumbent's own part: the whole flat file downloaded, converted to its default qcow2.
    const incumbentWork = (dir: string): string =>
      `curl -sS --fail -H @${headers} -o ${dir}/disk-flat.vmdk '${url}' && qemu-img convert -f raw -O qcow2 ${dir}/disk-flat.vmdk ${dir}/disk.qcow2`;
    // Then the datastore's cp: the stock fs cp copies a local file with `cp --sparse=always` (and
    // converts nothing here: the file is qcow2 already, which a qcow2 datastore keeps).
    const incumbentIntoFile = (dir: string, image: string): string => `${incumbentWork(dir)} && cp --sparse=always ${dir}/disk.qcow2 ${image} && sync ${image}`;
    const incumbentImage = join(dsDir, 'incumbent.qcow2');
    const incumbent = await keep(await run('incumbent: download, convert, copy', incumbentIntoFile(out, incumbentImage)), () => qcow2Matches(incumbentImage, disk, work));
    await rm(incumbentImage, { force: true });

    const checkOurs = (prefix: string) => async (): Promise<string> => {
      const imgs = imagesNamed(oned, prefix);
      if (imgs.length !== 1) return `${imgs.length} images`;
      return (await sha256Prefix(imgs[0]!.source, size)) === disk.sha256 ? 'ok' : 'DIFFERS';
    };
    const oursCbt = await keep(await run('oneswap import, CBT on', oneswapCmd('bench-cbt', 'a-'), { env: { ...env, ...oneswapEnv } }), checkOurs('a-'));
    const cbtPhases = await phaseTimes(join(work, 'logs', 'a-'), oursCbt.wallSeconds);
    // The same VM through the other readers. A lease streams what the simulator serves: the disk
    // as a streamOptimized VMDK made by qemu-img, whose size is measured here the same way.
    const streamFile = join(work, 'stream.vmdk');
    await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', disk.flatPath, streamFile]);
    const streamBytes = (await stat(streamFile)).size;
    await rm(streamFile);
    // Its wchar then also counts the export files the simulator (and its qemu-img, which writes
    // each byte about twice) wrote; without the proxy the row counts the body bytes the
    // simulator served instead (/sim/stats: less than the wire by SOAP, headers and TLS framing).
    const served = (s: SimStats): number => s.folderBytes + s.nfcBytes + s.nfcDiskBytes;
    const before = await simStats(sim);
    const lease = await run('oneswap import, CBT on, lease', oneswapCmd('bench-cbt', 'c-', '--transport lease'), { env: { ...env, ...oneswapEnv } });
    const after = await simStats(sim);
    const leaseBytes = after.nfcBytes - before.nfcBytes;
    const oursLease = await keep(proxy ? lease : { ...lease, networkBytes: served(after) - served(before) }, checkOurs('c-'));
    if (!proxy) notes.push('lease row: network = body bytes the simulator served (/sim/stats), not its wchar, which also counts the export files it wrote');
    const oursVddk = await keep(
      await run('oneswap import, CBT on, vddk (stand-in)', oneswapCmd('bench-cbt', 'd-', `--transport vddk --vddk-libdir ${vddk.libdir}`), {
        env: { ...env, ...oneswapEnv, PATH: `${vddk.pathDir}:${process.env.PATH ?? '/usr/bin:/bin'}` },
      }),
      checkOurs('d-'),
    );
    const readers = [oursCbt, oursLease, oursVddk];
    const oursPlain = await keep(await run('oneswap import, CBT off', oneswapCmd('bench-plain', 'b-'), { env: { ...env, ...oneswapEnv } }), checkOurs('b-'));
    const plainPhases = await phaseTimes(join(work, 'logs', 'b-'), oursPlain.wallSeconds);

    // The simulator computes CBT by hashing the whole disk when a snapshot is taken; ESXi keeps a
    // change bitmap instead. Timed here, outside every contender, to read the CBT row right.
    const hashing = await snapshotSeconds(vim, vmCbt.moref);

    // The same import into a qcow2 and a Ceph datastore, against their baselines.
    const stores = await datastoreTargets({
      work,
      disk,
      islands: data,
      dataBytes,
      oned,
      run: (name, cmd, extra = {}) => run(name, cmd, { ...extra, env: { ...env, ...extra.env } }),
      qemuFromUrl,
      incumbentWork,
      incumbentIntoFile,
      phases: async (prefix, wallSeconds) => (await phaseTimes(join(work, 'logs', prefix), wallSeconds)).text,
      oneswap: async ({ cbt, prefix, datastore, oned: o }) => {
        const oAuth = join(work, `one_auth-${prefix}`);
        await writeFile(oAuth, `${o.adminSession}\n`, { mode: 0o600 });
        return {
          cmd: oneswapCmd(cbt ? 'bench-cbt' : 'bench-plain', prefix, '', { datastore, endpoint: o.endpoint }),
          env: { ...env, ...oneswapEnv, ONE_AUTH: oAuth },
        };
      },
    });

    const cipher = await tlsCipher(port);
    const conditions = [
      `${cpus().length} cores`,
      streamMiBps > 0 ? `loopback, each /folder and export-lease download paced to ${streamMiBps} MiB/s (BENCH_STREAM_MIBPS)` : 'loopback, unpaced (CPU-bound)',
      useProxy ? 'through the counting TCP proxy' : 'straight to the simulator',
      `TLS ${cipher}`,
      'source and targets in page cache, outputs fsynced',
    ];
    const ratioOk = (a: Measurement, b: Measurement): boolean => a.ok && b.ok;
    const lines = [
      `oneswap bench:copy — ${size / GiB} GiB disk, ${(dataBytes / MiB).toFixed(0)} MiB data (${percent} %, ${islands} islands); ${conditions.join(', ')}`,
      '',
      table(rows, dataBytes, curl),
      '',
      'targets (ratios, not absolute times: the machine is shared and noisy):',
      check('wall, CBT off, vs incumbent <= 0.5', ratioOk(oursPlain, incumbent), oursPlain.wallSeconds / incumbent.wallSeconds, 0.5),
      check('wall, CBT on, vs incumbent <= 0.5', ratioOk(oursCbt, incumbent), oursCbt.wallSeconds / incumbent.wallSeconds, 0.5),
      check('wall, CBT on, vs curl <= 0.4', ratioOk(oursCbt, curl), oursCbt.wallSeconds / curl.wallSeconds, 0.4),
      check('wall, CBT off, vs curl <= 1.0', ratioOk(oursPlain, curl), oursPlain.wallSeconds / curl.wallSeconds, 1.0),
      ...(cbtPhases.areasSeconds === undefined
        ? []
        : [
            `        CBT on, less the ${cbtPhases.areasSeconds.toFixed(1)} s it waited for the simulator's CBT map: ` +
              `${ratio(oursCbt, incumbent, cbtPhases.areasSeconds)}x incumbent, ${ratio(oursCbt, curl, cbtPhases.areasSeconds)}x curl`,
            `        (the simulator hashes the disk's data at each snapshot: ${hashing.toFixed(1)} s for this VM measured alone; ESXi keeps a change bitmap)`,
          ]),
      check('network, CBT on, vs data <= 1.05', oursCbt.ok, oursCbt.networkBytes / dataBytes, 1.05),
      check('written, CBT on, vs data <= 1.0 (+1 %)', oursCbt.ok, oursCbt.writtenBytes / dataBytes, 1.01),
      check('written, CBT off, vs data <= 1.0 (+1 %)', oursPlain.ok, oursPlain.writtenBytes / dataBytes, 1.01),
      ...readers.slice(1).map((m) => check(`written, ${m.name.replace('oneswap import, ', '')}, vs data <= 1.0 (+1 %)`, m.ok, m.writtenBytes / dataBytes, 1.01)),
      check(
        `network, lease, vs the streamOptimized VMDK of the disk (${(streamBytes / MiB).toFixed(0)} MiB) <= 1.0 (+1 %)`,
        oursLease.ok,
        oursLease.networkBytes / streamBytes,
        1.01,
      ),
      check('peak RSS MiB, CBT on <= 256', oursCbt.ok, oursCbt.peakRssBytes / MiB, 256),
      check('peak RSS MiB, CBT off <= 256', oursPlain.ok, oursPlain.peakRssBytes / MiB, 256),
      check('output files equal the source disk', true, rows.filter((r) => r.check !== 'ok' && r.check !== 'n/a').length, 0, 'contenders wrong or failed'),
      '',
      ...stores.sections.flatMap((t) => [t, '']),
      'targets per kind of datastore (ratios against that kind\'s incumbent):',
      ...stores.checks,
      '',
      'notes:',
      ...[
        `oneswap phases (from its run log), CBT on: ${cbtPhases.text}; CBT off: ${plainPhases.text}`,
        ...notes,
        `for reference: qemu-img ${ratio(qemu, curl)}x curl, nbdcopy ${ratio(nbd, curl)}x curl, incumbent ${ratio(incumbent, curl)}x curl`,
        `readers, CBT on: lease ${ratio(oursLease, oursCbt)}x folder, vddk stand-in ${ratio(oursVddk, oursCbt)}x folder; the lease downloaded ${leaseBytes} bytes of a ${streamBytes}-byte streamOptimized VMDK (qemu-img convert of the source, as the simulator serves it)`,
        "vddk (stand-in): VMware's VDDK is not available here; the stand-in is nbdkit's python plugin reading the simulator's /nfc-disk over HTTPS (one request per NBD read, unpaced: BENCH_STREAM_MIBPS does not apply), so its speed says nothing about real VDDK",
        useProxy
          ? 'network = bytes both ways through the counting proxy (a Node relay in the data path: it slows every contender)'
          : 'network = bytes the vCenter simulator sent (its /proc io wchar less its log; equal to the byte to what the counting proxy sees); client requests (a few KiB) are not counted; BENCH_PROXY=1 counts both ways through the TCP proxy, a Node relay that slows line rate 2-4x here',
        "written = write_bytes of the contender's process tree (/proc io); CPU = user + system of the tree, peak RSS = its largest process (GNU time); server CPU = the simulator's",
        streamMiBps > 0
          ? `per-stream pacing models datastore HTTP (one download gets tens of MB/s through vCenter); oneswap's ${streamsArg ?? 4} range streams per disk are what beat a single download there`
          : 'unpaced: the whole-disk rows are CPU-bound: client, simulator and loopback TCP share the 2 cores (curl, our import: one thread does TLS)',
        ...stores.notes,
        `writing new page cache (dd, before the contenders) took ${pageCacheSecondsPerGiB.toFixed(2)} s per GiB here (about 0.15 s where memory is warm, up to 1.9 s on this VM when the host faults fresh pages in): every contender that writes pays it, curl does not`,
      ].map((n) => `  - ${n}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await proxy?.close();
    await oned.stop();
    await sim.stop();
    await vddk.cleanup();
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * From a run log's timestamped lines: how long each phase took, and within copy the time before
 * the first byte (finding the allocated areas: with CBT a snapshot, the query, its removal) and
 * the data transfer itself; plus the time outside the run (process start-up and exit).
 */
async function phaseTimes(dir: string, wallSeconds: number): Promise<{ text: string; areasSeconds: number | undefined }> {
  const files = await readdir(dir).catch(() => [] as string[]);
  if (files.length === 0) return { text: 'no log', areasSeconds: undefined };
  const lines = (await readFile(join(dir, files[0]!), 'utf8')).split('\n').filter(Boolean);
  const at = (l: string): number => Date.parse(l.slice(0, l.indexOf(' ')));
  const started = new Map<string, number>();
  const parts: string[] = [];
  for (const l of lines) {
    const m = /^\S+ \S+: (\w+) (start|done)\b/.exec(l);
    if (m === null) continue;
    if (m[2] === 'start') started.set(m[1]!, at(l));
    else if (started.has(m[1]!)) parts.push(`${m[1]} ${((at(l) - started.get(m[1]!)!) / 1000).toFixed(1)} s`);
  }
  const first = (re: RegExp): number | undefined => {
    const l = lines.find((x) => re.test(x));
    return l === undefined ? undefined : at(l);
  };
  const copyStart = first(/: copy start/);
  const firstByte = first(/: disk0 copying /);
  const diskDone = first(/: disk0 done /);
  let areasSeconds: number | undefined;
  if (copyStart !== undefined && firstByte !== undefined && diskDone !== undefined) {
    areasSeconds = (firstByte - copyStart) / 1000;
    parts.push(`(copy = areas ${areasSeconds.toFixed(1)} s + data ${((diskDone - firstByte) / 1000).toFixed(1)} s)`);
  }
  const logged = (at(lines.at(-1)!) - at(lines[0]!)) / 1000;
  parts.push(`outside the run log (start-up, exit) ${(wallSeconds - logged).toFixed(1)} s`);
  return { text: parts.join(', '), areasSeconds };
}

/** The TLS version and cipher the simulator picks for a client offering OpenSSL's defaults. */
async function tlsCipher(port: number): Promise<string> {
  const { connect } = await import('node:tls');
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const c = s.getCipher();
      resolve(`${c.version} ${c.standardName}`);
      s.destroy();
    });
    s.on('error', () => resolve('?'));
  });
}

await main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode ||= 1;
});
