// `oneswap convert --image ID... | --vm NAME`: (re-)runs the guest conversion on OpenNebula images
// that already hold a copied guest, e.g. after a conversion failed or an import ran with
// --no-convert. Nothing is copied again; the images are only written when conversion succeeded.

import { join } from 'node:path';
import { OneswapError, describeError } from '../errors/index.js';
import type { Firmware } from '../input/index.js';
import { checkAdditions } from '../convert/index.js';
import { convertibleImage, forQemu, importedDiskOf } from '../output/index.js';
import type { OneClient, OneImage } from '../one/index.js';
import { openRunLog } from '../progress/index.js';
import { convertImages, defaultStateDir, describeConversion, fanOut, newRunId, sourceMacsNetwork } from '../supervisor/index.js';
import { connectOne } from './connect.js';
import { progressDisplay, type RunCliOptions } from './run-options.js';

export interface ConvertCliOptions extends RunCliOptions {
  image: string[];
  vm?: string;
  firmware?: string;
}

export async function runConvert(o: ConvertCliOptions, signal: AbortSignal): Promise<number> {
  const ids = o.image.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
  if ((ids.length === 0) === (o.vm === undefined))
    throw new OneswapError('usage', 'name the images to convert with --image ID[,ID...] (boot disk first) or --vm NAME, not both');
  const firmware = parseFirmware(o.firmware);
  const additions = { contextPackage: o.contextPackage, guestAgent: o.guestAgent ?? false };
  await checkAdditions(additions);
  const stateDir = o.stateDir ?? defaultStateDir();
  const logDir = o.logDir ?? join(stateDir, 'logs');
  const runId = newRunId();
  const runLog = openRunLog(logDir, runId);
  const emit = fanOut(progressDisplay(o.progress), runLog.sink);
  emit({ type: 'run', state: 'start', runId, logFile: runLog.path });
  let ok = false;
  try {
    const one = await connectOne(o.endpoint);
    try {
      const images = o.vm !== undefined ? await imagesOfVm(one, o.vm) : await Promise.all(ids.map((id) => imageById(one, id)));
      const targets = await Promise.all(images.map((img) => convertibleImage(one, img, (message) => emit({ type: 'log', level: 'warn', message }))));
      const boot = images[0]!;
      const vm = o.vm ?? importedDiskOf(boot).vmName ?? boot.name;
      const t0 = Date.now();
      emit({ type: 'phase', vm, phase: 'convert', state: 'start' });
      try {
        const r = await forQemu(targets, (opened) =>
          convertImages(
          { one, emit, signal },
          {
            vm,
            images: images.map((i, k) => ({ id: i.id, image: opened[k]!, bus: importedDiskOf(i).bus })),
            firmware: firmware ?? importedDiskOf(boot).firmware,
            memoryMiB: 2048,
            cpus: 2,
            nics: [],
            // Images alone do not tell the VM's NICs: a single configured interface follows the VM's only NIC.
            network: sourceMacsNetwork(undefined),
            stateDir,
            logDir,
            runId,
            additions,
          },
          ),
        );
        if (r.kind === 'no-os') emit({ type: 'log', level: 'warn', vm, message: `no operating system found on images ${images.map((i) => i.id).join(', ')}: nothing converted (${r.reason})` });
        emit({ type: 'phase', vm, phase: 'convert', state: r.kind === 'no-os' ? 'skipped' : 'done', durationMs: Date.now() - t0, detail: describeConversion(r) });
      } catch (err) {
        emit({ type: 'phase', vm, phase: 'convert', state: 'failed', durationMs: Date.now() - t0, detail: describeError(err) });
        throw err;
      }
      ok = true;
    } finally {
      one.close();
    }
  } catch (err) {
    runLog.sink({ type: 'log', level: 'error', message: describeError(err) });
    throw err;
  } finally {
    emit({ type: 'run', state: 'end', runId, ok });
    await runLog.close();
  }
  return 0;
}

function parseFirmware(v: string | undefined): Firmware | undefined {
  if (v === undefined) return undefined;
  const f = v.toLowerCase() === 'uefi' ? 'efi' : v.toLowerCase();
  if (f !== 'bios' && f !== 'efi') throw new OneswapError('usage', `--firmware "${v}" is not bios or efi`);
  return f;
}

async function imageById(one: OneClient, id: string): Promise<OneImage> {
  if (!/^\d+$/.test(id)) throw new OneswapError('usage', `--image "${id}" is not an image id`);
  return one.image(Number(id));
}

/** The images an import made for a VM, boot disk first. */
async function imagesOfVm(one: OneClient, vm: string): Promise<OneImage[]> {
  const user = await one.whoami();
  const mine = (await one.images(-3)).filter((i) => i.uid === user.id && importedDiskOf(i).vmName === vm);
  if (mine.length === 0) throw new OneswapError('not-found', `no images of yours were imported from a VM named "${vm}"`, { hint: 'list them with: oneimage list; or name them with --image ID,...' });
  return mine.sort((a, b) => importedDiskOf(a).index - importedDiskOf(b).index);
}
