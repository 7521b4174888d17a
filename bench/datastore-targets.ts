// The qcow2 and Ceph rows of `npm run bench:copy` (issue 17): for each of these kinds of image
// datastore, `oneswap import` into it (CBT on and off) against two baselines writing the same kind
// of target from the same source:
//   qemu-img    `qemu-img convert` reading the HTTPS URL (qemu's curl driver) into a qcow2 file,
//               or into an RBD image through qemu's rbd driver
//   incumbent   its download → qcow2 work file, then the datastore's own import copy: for a qcow2
//               (fs) datastore `cp --sparse=always` of the qcow2 file (the file datastore's path,
//               run again next to oneswap's rows), for Ceph the stock ceph `cp`: the file into a
//               staging file, `qemu-img convert -O raw` (it is qcow2), `rbd import`
// Each output is checked byte for byte (sha256 of `qemu-img convert -O raw` or `rbd export`) and
// measured in its store (qcow2 data clusters, `rbd du`); for Ceph the bytes written also count
// what the OSD received from clients. Then the issue's targets per kind: allocation exactly the
// data's clusters or objects, wall time <= 0.5x the incumbent's, peak RSS <= 256 MiB.
// Without the Ceph packages (or the bridge host's sshd, which the stock-like ceph driver needs
// for its placeholders) the Ceph rows are skipped with the reason.

import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { qcow2Allocated } from '../lib/output/index.js';
import type { TestDisk } from '../test/peers/vcsim/fixture.js';
import { startOned, type Oned } from '../test/peers/one/index.js';
import { cephSkip, startCeph, type Ceph } from '../test/peers/ceph/index.js';
import { bridgeSkip, startBridge, type Bridge } from '../test/peers/bridge/index.js';
import { QCOW2_CLUSTER, RBD_OBJECT, unitsTouched } from '../test/support/image-contents.js';
import { table, type Measurement, type MeasureOptions } from './measure.js';
import { check, checkExact, qcow2Matches, rbdMatches } from './output-check.js';

const MiB = 1024 * 1024;
/**
 * Runs of each contender in these sections (BENCH_TARGET_RUNS, default 2), the fastest kept: each
 * ratio compares two runs minutes apart on a shared machine, whose load drifts meanwhile.
 */
const RUNS = Number(process.env.BENCH_TARGET_RUNS ?? 2);

export interface DatastoreBench {
  /** A scratch directory of the benchmark's (outputs and work files go below it). */
  readonly work: string;
  /** The source disk; both VMs hold the same bytes. */
  readonly disk: TestDisk;
  /** Where its data lies. */
  readonly islands: ReadonlyArray<{ offset: number; length: number }>;
  readonly dataBytes: number;
  /** The simulator the file datastore lives in; the qcow2 datastore is made there. */
  readonly oned: Oned;
  /** Runs one contender as every row of bench:copy is run (outputs of the previous one synced). */
  run(name: string, cmd: string, extra?: Partial<MeasureOptions>): Promise<Measurement>;
  /**
   * `qemu-img convert` from the disk's HTTPS URL with `output` (format options and target) and
   * `after` appended; `undo` removes what a hung first run left before its rerun.
   */
  qemuFromUrl(name: string, output: string, after: string, undo: () => Promise<unknown>, extra?: Partial<MeasureOptions>): Promise<Measurement>;
  /** The incumbent's download and conversion into `<dir>/disk.qcow2` (a shell command). */
  incumbentWork(dir: string): string;
  /** The same, then a file datastore's cp of the qcow2 file to `image`, synced. */
  incumbentIntoFile(dir: string, image: string): string;
  /** `oneswap import` of the CBT-on or CBT-off VM into datastore `datastore` of `oned`. */
  oneswap(o: { readonly cbt: boolean; readonly prefix: string; readonly datastore: number; readonly oned: Oned }): Promise<{ cmd: string; env: Record<string, string> }>;
  /** How long each phase of the run named by `prefix` took, from its run log. */
  phases(prefix: string, wallSeconds: number): Promise<string>;
}

export interface DatastoreResults {
  /** Tables, one per kind of datastore (or the reason it was skipped). */
  readonly sections: string[];
  /** PASS/MISS lines. */
  readonly checks: string[];
  readonly notes: string[];
}

/** The images of a simulator whose names start with `prefix`. */
export function imagesNamed(oned: Oned, prefix: string): Array<{ id: number; name: string; source: string; format: string }> {
  return [...Array(200).keys()].flatMap((id) => {
    const img = oned.image(id);
    return img !== undefined && img.name.startsWith(prefix) ? [img] : [];
  });
}

export async function datastoreTargets(b: DatastoreBench): Promise<DatastoreResults> {
  const qcow2 = await qcow2Rows(b);
  const ceph = await cephRows(b);
  return { sections: [...qcow2.sections, ...ceph.sections], checks: [...qcow2.checks, ...ceph.checks], notes: [...qcow2.notes, ...ceph.notes] };
}

/**
 * A section's table, targets and notes from its kept runs (qemu-img, the incumbent, then
 * oneswap's), the ratios against the incumbent.
 */
function report(b: DatastoreBench, kind: string, title: string, runs: readonly Run[], unit: { bytes: number; name: string }, howChecked: string, notes: readonly string[]): DatastoreResults {
  const rows = runs.map((r) => r.m);
  const [, incumbent, ...ours] = rows;
  const oneswapPhases = runs.slice(2).map((r) => `${kind}, ${r.m.name.replace(/^oneswap import, /, '')}: ${r.phases}`);
  return {
    sections: [`${title}, ${RUNS === 1 ? 'one run' : `best of ${RUNS} runs`} each: ratios against the incumbent`, table(rows, b.dataBytes, incumbent!, { against: 'x incumbent' })],
    checks: [
      ...targets(kind, b, incumbent!, ours, unit),
      check(`${kind} outputs equal the source disk (${howChecked})`, true, rows.filter((r) => r.check !== 'ok').length, 0, 'contenders wrong or failed'),
    ],
    notes: [...notes, `oneswap phases (from its run log), ${oneswapPhases.join('; ')}`],
  };
}

/** The issue's targets for oneswap's rows of one kind of datastore. */
function targets(kind: string, b: DatastoreBench, incumbent: Measurement, ours: readonly Measurement[], unit: { bytes: number; name: string }): string[] {
  const expected = unitsTouched(b.islands, b.disk.sizeBytes, unit.bytes);
  return ours.flatMap((m) => {
    const label = `${kind}, ${m.name.replace(/^oneswap import[^,]*, /, '')}`;
    return [
      check(`wall, ${label}, vs incumbent <= 0.5`, m.ok && incumbent.ok, m.wallSeconds / incumbent.wallSeconds, 0.5),
      checkExact(`allocated, ${label}, = the data's ${unit.name}`, m.ok && m.allocatedBytes !== undefined, m.allocatedBytes ?? NaN, expected, 'bytes'),
      check(`written, ${label}, vs data <= 1.0 (+1 %)`, m.ok, m.writtenBytes / b.dataBytes, 1.01),
      check(`peak RSS MiB, ${label} <= 256`, m.ok, m.peakRssBytes / MiB, 256),
    ];
  });
}

/** One run of a contender, its output checked and removed; for oneswap, its phases from the run log. */
interface Run {
  readonly m: Measurement;
  readonly phases?: string;
}

/** A contender of a section: `once(round)` runs it once. */
interface Contender {
  once(round: number): Promise<Run>;
}

/**
 * Every contender once per round, `runs` rounds in turn, so that a change in the shared machine's
 * load reaches all of them alike; each keeps its fastest run, unless a run failed or wrote a wrong
 * image: then that run is kept (a failure is never hidden by a better run).
 */
async function bestOf(contenders: readonly Contender[], runs: number): Promise<Run[]> {
  const bad = (r: Run): boolean => !r.m.ok || r.m.check !== 'ok';
  const best: Array<Run | undefined> = contenders.map(() => undefined);
  for (let round = 0; round < runs; round++) {
    for (const [i, c] of contenders.entries()) {
      const run = await c.once(round);
      const kept = best[i];
      if (kept === undefined || (!bad(kept) && (bad(run) || run.m.wallSeconds < kept.m.wallSeconds))) best[i] = run;
    }
  }
  return best.map((r) => r!);
}

/** `body` with a fresh work directory under `parent`, removed afterwards. */
async function inWorkDir<T>(parent: string, body: (work: string) => Promise<T>): Promise<T> {
  const work = await mkdtemp(join(parent, 'work-'));
  try {
    return await body(work);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * oneswap's contenders, CBT on and off, importing into datastore `datastore` of `oned` (image
 * names starting with `letter`); `output` checks and removes the images a run made.
 */
function oneswapContenders(
  b: DatastoreBench,
  letter: string,
  to: { readonly datastore: number; readonly oned: Oned },
  output: (m: Measurement, images: ReadonlyArray<{ source: string; format: string }>) => Promise<Measurement>,
  extra: Partial<MeasureOptions> = {},
): Contender[] {
  return [true, false].map((cbt) => ({
    once: async (round) => {
      const prefix = `${letter}${cbt ? 'c' : 'p'}${round}-`;
      const { cmd, env } = await b.oneswap({ cbt, prefix, ...to });
      const m = await b.run(`oneswap import, CBT ${cbt ? 'on' : 'off'}`, cmd, { ...extra, env });
      return { m: await output(m, imagesNamed(to.oned, prefix)), phases: await b.phases(prefix, m.wallSeconds) };
    },
  }));
}

async function qcow2Rows(b: DatastoreBench): Promise<DatastoreResults> {
  const ds = await b.oned.createDatastore({ name: 'bench-qcow2', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'qcow2' });
  const dsDir = b.oned.datastore(ds)!.basePath;
  const dir = await mkdtemp(join(b.work, 'qcow2-'));
  /** Measures and checks the qcow2 file a run wrote (none when the run failed), then removes it. */
  const output = async (m: Measurement, file: string | undefined, checkClean = false): Promise<Measurement> => {
    if (m.ok && file !== undefined) {
      m.allocatedBytes = await qcow2Allocated(file);
      const checked = checkClean ? await execa('qemu-img', ['check', '-q', '-f', 'qcow2', file], { reject: false }) : undefined;
      m.check = checked && checked.exitCode !== 0 ? `qemu-img check: exit ${checked.exitCode}` : await qcow2Matches(file, b.disk, b.work);
    } else m.check = m.ok ? 'no image' : '-';
    if (file !== undefined) await rm(file, { force: true });
    return m;
  };

  const qemuOut = join(dsDir, 'qemu.qcow2');
  const qemu: Contender = {
    once: async () => ({ m: await output(await b.qemuFromUrl('qemu-img convert https → qcow2', `-O qcow2 ${qemuOut}`, ` && sync ${qemuOut}`, () => rm(qemuOut, { force: true })), qemuOut) }),
  };
  // The file datastore's path, run here again next to oneswap's rows.
  const incumbentImage = join(dsDir, 'incumbent.qcow2');
  const incumbent: Contender = {
    once: async () => ({ m: await output(await inWorkDir(dir, (work) => b.run('incumbent: download, convert, copy', b.incumbentIntoFile(work, incumbentImage))), incumbentImage) }),
  };
  const ours = oneswapContenders(b, 'q', { datastore: ds, oned: b.oned }, async (m, imgs) => {
    if (imgs.length === 1 && imgs[0]!.format === 'qcow2') return output(m, imgs[0]!.source, true);
    m.check = m.ok ? `${imgs.length} images (${imgs.map((i) => i.format).join(', ')})` : '-';
    return m;
  });
  const runs = await bestOf([qemu, incumbent, ...ours], RUNS);
  await rm(dir, { recursive: true, force: true });
  return report(b, 'qcow2', 'qcow2 datastore (TM_MAD qcow2)', runs, { bytes: QCOW2_CLUSTER, name: '64 KiB clusters' }, "sha256; oneswap's also check clean", [
    "qcow2: the incumbent's path is the file datastore's (a qcow2 datastore's stock cp is cp --sparse=always of the qcow2 work file, no conversion: it is qcow2 already), run again next to oneswap's rows",
    "qcow2: allocated = bytes of data clusters in `qemu-img map`; written = the tree's write_bytes, qcow2 metadata included",
  ]);
}

async function cephRows(b: DatastoreBench): Promise<DatastoreResults> {
  const skip = cephSkip() || bridgeSkip();
  if (skip)
    return {
      sections: [`Ceph datastore: SKIPPED, ${skip}`],
      checks: [`  SKIP  Ceph targets: ${skip}`],
      notes: [],
    };
  const dir = await mkdtemp(join(b.work, 'ceph-'));
  let ceph: Ceph | undefined;
  let bridge: Bridge | undefined;
  let oned: Oned | undefined;
  try {
    process.stderr.write('bench: starting a one-node Ceph and a bridge host\n');
    // memstore keeps the pool in RAM: room for one 1 GiB output at a time, each removed after its check.
    [ceph, bridge] = await Promise.all([startCeph({ memstoreBytes: 3 * 1024 * MiB }), startBridge({ hosts: ['bridge1'] })]);
    const c = ceph;
    // The stock-like ceph driver makes its placeholders with rbd on a BRIDGE_LIST host over ssh,
    // as the bridge user with its own copy of the client identity; oneswap reads the same files.
    const o = await startOned({ asyncDelayMs: 50, dataDir: join(dir, 'one'), driverEnv: { PATH: bridge.env().PATH ?? '' } });
    oned = o;
    o.createNetwork({ name: 'VM Network', bridge: 'br0', ars: [{ type: 'ETHER', size: 16 }] });
    const key = /key\s*=\s*(\S+)/.exec(await readFile(c.keyring, 'utf8'))?.[1];
    if (key === undefined) throw new Error(`no key in ${c.keyring}`);
    const keyFile = await bridge.giveFile('ceph.key', `${key}\n`);
    const confFile = await bridge.giveFile('ceph.conf', ['[global]', `fsid = ${c.fsid}`, `mon host = [v2:${c.monHostV2},v1:${c.monHost}]`, ''].join('\n'));
    const ds = await o.createDatastore({
      name: 'bench-ceph',
      type: 'IMAGE_DS',
      dsMad: 'ceph',
      tmMad: 'ceph',
      template: { DISK_TYPE: 'RBD', BRIDGE_LIST: bridge.hostName, POOL_NAME: c.pool, CEPH_USER: c.user, CEPH_CONF: confFile, CEPH_KEY: keyFile },
      // Its monitor needs a ceph-mgr (`ceph df`), which this cluster does not run.
      totalMb: 100_000,
      freeMb: 100_000,
    });

    const rbd = ['rbd', '--conf', c.conf, '--id', c.user];
    // A contender's bytes written count what the OSD received from clients meanwhile.
    const toCeph = {
      storeWritten: async (): Promise<number> => {
        const perf = JSON.parse(await c.ceph(['tell', 'osd.0', 'perf', 'dump'])) as { osd: { op_w_in_bytes: number } };
        return perf.osd.op_w_in_bytes;
      },
    };
    /** Measures and checks the RBD image a run wrote (none when the run failed), then removes it. */
    const output = async (m: Measurement, image: string | undefined): Promise<Measurement> => {
      if (m.ok && image !== undefined) {
        const du = JSON.parse(await c.rbd(['du', '--format', 'json', image])) as { images: Array<{ used_size: number }> };
        m.allocatedBytes = du.images[0]!.used_size;
        m.check = await rbdMatches(rbd, image, b.disk);
      } else m.check = m.ok ? 'no image' : '-';
      if (image !== undefined) await c.rbd(['rm', '--no-progress', image]).catch(() => undefined);
      return m;
    };

    const qemuImage = `${c.pool}/bench-qemu-img`;
    // qemu's rbd driver reads the admin key from the keyring the cluster's conf names: no key on argv.
    const qemuTarget = `-O raw 'rbd:${qemuImage}:id=${c.user}:conf=${c.conf}'`;
    const removeQemuImage = (): Promise<unknown> => c.rbd(['rm', '--no-progress', qemuImage]).catch(() => undefined);
    const qemu: Contender = { once: async () => ({ m: await output(await b.qemuFromUrl('qemu-img convert https → rbd', qemuTarget, '', removeQemuImage, toCeph), qemuImage) }) };

    const incumbentImage = `${c.pool}/bench-incumbent`;
    // The stock ceph cp, run here: the bridge is this host, so its `ssh <bridge> dd` is a local
    // dd (which only spares the incumbent ssh's cost).
    const incumbentCmd = (work: string): string => {
      const staging = join(work, 'staging');
      return [
        b.incumbentWork(work),
        `cat ${work}/disk.qcow2 | dd of=${staging} bs=64k status=none`,
        `qemu-img convert -O raw ${staging} ${staging}.raw`,
        `mv ${staging}.raw ${staging}`,
        `rbd import ${staging} ${incumbentImage}`,
        `rm -f ${staging}`,
      ].join(' && ');
    };
    const incumbent: Contender = {
      once: async () => ({
        m: await output(await inWorkDir(dir, (work) => b.run('incumbent: download, convert, ceph cp', incumbentCmd(work), { env: envOf(c.env({})), ...toCeph })), incumbentImage),
      }),
    };
    const ours = oneswapContenders(b, 'r', { datastore: ds, oned: o }, (m, imgs) => output(m, imgs.length === 1 ? imgs[0]!.source : undefined), toCeph);
    const runs = await bestOf([qemu, incumbent, ...ours], RUNS);
    return report(b, 'Ceph', `Ceph datastore (DS_MAD ceph; one-node Ceph, memstore OSD, ${c.startMs} ms to HEALTH_OK)`, runs, { bytes: RBD_OBJECT, name: '4 MiB objects' }, 'sha256 of rbd export', [
      "Ceph: written = the tree's write_bytes on local disk plus the bytes the OSD received from clients (osd.op_w_in_bytes); allocated = `rbd du` used size; the OSD keeps its data in RAM (memstore), so Ceph's own disk writes are not in any row",
      "Ceph: the incumbent's cp is the stock ceph datastore cp without its ssh hop (the bridge host is this host); `rbd import` skips zero blocks; the Ceph daemons' CPU is in no column",
    ]);
  } finally {
    await oned?.stop();
    await Promise.all([ceph?.stop(), bridge?.stop()]);
    await rm(dir, { recursive: true, force: true });
  }
}

/** An environment's defined variables (for a contender's env). */
function envOf(e: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(e).filter((kv): kv is [string, string] => kv[1] !== undefined));
}
