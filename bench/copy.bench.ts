// npm run bench:copy — cold import of a 4 GiB disk with about 25 % data, against its baselines, in
// one run on this machine:
//   curl          one GET of the flat file (the line-rate reference), to /dev/null
//   qemu-img      qemu-img convert from the HTTPS URL into a raw file
//   nbdcopy       nbdcopy over nbdkit's curl plugin into a raw file
//   incumbent     download to a work directory, qemu-img convert to qcow2, copy into the datastore
//   oneswap       `oneswap import` with CBT on (only data travels) and with CBT off
// Prints wall time, bytes over the network, bytes written to disk and peak RSS, then the targets.
// BENCH_DISK_GIB (default 4) and BENCH_DATA_PERCENT (default 25) change the disk.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startVcsim } from '../test/peers/vcsim/index.js';
import { createTestVm, client as vimClient } from '../test/peers/vcsim/fixture.js';
import { startOned } from '../test/peers/one/index.js';
import { startTcpProxy } from '../test/peers/net/tcp-proxy.js';
import { REPO_ROOT } from '../test/peers/cli.js';
import { measure, table, type Measurement } from './measure.js';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const size = Number(process.env.BENCH_DISK_GIB ?? 4) * GiB;
const percent = Number(process.env.BENCH_DATA_PERCENT ?? 25);
const islands = 16;
const islandBytes = Math.floor((size * percent) / 100 / islands / MiB) * MiB;

async function sha256Prefix(path: string, length: number): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1, highWaterMark: 4 * MiB })) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'oneswap-bench-copy-'));
  const sim = await startVcsim();
  const proxy = await startTcpProxy(sim.port);
  const oned = await startOned({ asyncDelayMs: 50, dataDir: join(work, 'one') });
  try {
    const dsId = await oned.createDatastore({ name: 'bench', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared' });
    oned.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 16 }] });
    const data = Array.from({ length: islands }, (_, i) => ({ offset: Math.floor((i * size) / islands / MiB) * MiB + 4 * MiB, length: islandBytes }));
    process.stderr.write(`bench: creating two VMs with a ${size / GiB} GiB disk and ${(islands * islandBytes) / MiB} MiB of data each\n`);
    const vmCbt = await createTestVm(sim, { name: 'bench-cbt', cbt: true, disks: [{ sizeBytes: size, data }], nics: [{ network: 'VM Network' }] });
    const vmPlain = await createTestVm(sim, { name: 'bench-plain', cbt: false, disks: [{ sizeBytes: size, data }], nics: [{ network: 'VM Network' }] });
    const disk = vmCbt.disks[0]!;
    const dataBytes = disk.dataBytes;

    const vim = await vimClient(sim);
    const flatName = disk.fileName.replace(/^\[[^\]]+\] /, '').replace(/\.vmdk$/, '-flat.vmdk');
    const url = `https://127.0.0.1:${proxy.port}/folder/${flatName}?dcPath=DC0&dsName=LocalDS_0`;
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
    const oneswapCmd = (vm: string, prefix: string): string =>
      `node ${join(REPO_ROOT, 'dist/lib/cli/main.js')} import --vcenter 127.0.0.1:${proxy.port} --user ${sim.username} --thumbprint ${sim.thumbprintSha256} ` +
      `--datastore ${dsId} --endpoint ${oned.endpoint} --no-convert --progress plain --name-prefix ${prefix} ${vm}`;
    const qemuJson = (u: string): string =>
      `'json:${JSON.stringify({ 'file.driver': 'https', 'file.url': u, 'file.sslverify': false, 'file.cookie': cookie, 'file.readahead': 1048576 * 4 })}'`;

    const rows: Measurement[] = [];
    const run = async (name: string, cmd: string, extraEnv: Record<string, string> = {}): Promise<Measurement> => {
      process.stderr.write(`bench: ${name}\n`);
      const m = await measure(name, cmd, { env: { ...env, ...extraEnv }, proxy });
      rows.push(m);
      await rm(out, { recursive: true, force: true });
      await mkdir(out);
      return m;
    };

    const curl = await run('curl (line rate, to /dev/null)', `curl -sS --fail -H @${headers} -o /dev/null '${url}'`);
    const qemu = await run('qemu-img convert https → raw', `qemu-img convert -f raw -O raw ${qemuJson(url)} ${out}/disk.raw`);
    const nbd = await run(
      'nbdcopy over nbdkit curl',
      `nbdkit -U - curl url='${url}' cookie='${cookie}' sslverify=false --run 'nbdcopy "$uri" ${out}/disk.raw'`,
    );
    const incumbent = await run(
      'incumbent: download, convert, copy',
      `curl -sS --fail -H @${headers} -o ${out}/disk-flat.vmdk '${url}' && qemu-img convert -f raw -O qcow2 ${out}/disk-flat.vmdk ${out}/disk.qcow2 && cp ${out}/disk.qcow2 ${dsDir}/incumbent.qcow2 && rm -f ${dsDir}/incumbent.qcow2`,
    );
    const oursCbt = await run('oneswap import, CBT on', oneswapCmd('bench-cbt', 'a-'), oneswapEnv);
    const oursPlain = await run('oneswap import, CBT off', oneswapCmd('bench-plain', 'b-'), oneswapEnv);

    // Correctness of what we measured: our images hold the source bytes.
    const imgs = [...Array(50).keys()].map((id) => oned.image(id)).filter((i) => i !== undefined);
    for (const img of imgs) {
      const digest = await sha256Prefix(img.source, size);
      if (digest !== disk.sha256) throw new Error(`image ${img.id} (${img.name}) does not hold the source bytes`);
    }

    const lines = [
      `oneswap bench:copy — ${size / GiB} GiB disk, ${(dataBytes / MiB).toFixed(0)} MiB data (${percent} %), loopback, source in page cache`,
      '',
      table(rows, dataBytes),
      '',
      'targets:',
      check('wall, CBT off, vs incumbent <= 0.5', oursPlain.wallSeconds / incumbent.wallSeconds, 0.5),
      check('wall, CBT on, vs curl <= 0.4', oursCbt.wallSeconds / curl.wallSeconds, 0.4),
      check('wall, CBT off, vs curl <= 1.0', oursPlain.wallSeconds / curl.wallSeconds, 1.0),
      check('network, CBT on, vs data <= 1.05', oursCbt.networkBytes / dataBytes, 1.05),
      check('written, CBT on, vs data <= 1.0 (+1 %)', oursCbt.writtenBytes / dataBytes, 1.01),
      check('written, CBT off, vs data <= 1.0 (+1 %)', oursPlain.writtenBytes / dataBytes, 1.01),
      check('peak RSS MiB, CBT on <= 256', oursCbt.peakRssBytes / MiB, 256),
      check('peak RSS MiB, CBT off <= 256', oursPlain.peakRssBytes / MiB, 256),
      '',
      `for reference: qemu-img ${ratio(qemu, curl)}x curl, nbdcopy ${ratio(nbd, curl)}x curl, incumbent ${ratio(incumbent, curl)}x curl`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await proxy.close();
    await oned.stop();
    await sim.stop();
    await rm(work, { recursive: true, force: true });
  }
}

function check(what: string, value: number, limit: number): string {
  return `  ${value <= limit ? 'PASS' : 'MISS'}  ${what}: ${value.toFixed(2)}`;
}

function ratio(a: Measurement, b: Measurement): string {
  return (a.wallSeconds / b.wallSeconds).toFixed(2);
}

await main();
