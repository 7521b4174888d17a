// Taking back the images a failed run created. oned deletes an image asynchronously: the
// datastore's rm runs, and only when it succeeds is the image gone; when it fails the image stays
// in ERROR. So each deletion is followed to its end, and "removed" is said only of images that are
// gone. Only a placeholder still LOCKED (its mkfs running) is deleted by force at once: a forced
// delete drops the image even when rm fails, which would leave its file or RBD image behind
// unseen. An image whose rm failed is dropped by force only when its storage holds nothing for
// it (no SOURCE, or a file datastore's SOURCE file not there, here or on its bridge host: the
// stock fs rm fails on a file that is missing); otherwise it stays in ERROR, for the user to see.

import { access } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { oneLine, type OneClient, type OneImage } from '../one/index.js';
import type { OneswapError } from '../errors/index.js';
import { bridgeHostFor, onBridge, shellQuote } from './bridge-host.js';
import { imageStorageOf } from './image-storage.js';

/** How long the datastores' rm may take, for all the images together. */
const REMOVAL_WAIT_MS = 20_000;

export async function removeImages(one: OneClient, ids: readonly number[], log: (line: string, level?: 'warn') => void, waitMs = REMOVAL_WAIT_MS): Promise<void> {
  const deleted: OneImage[] = [];
  for (const id of ids) {
    try {
      const image = await one.image(id);
      await one.imageDelete(id, image.stateName.startsWith('LOCKED'));
      deleted.push(image);
    } catch (err) {
      if ((err as OneswapError).kind === 'not-found') continue;
      log(`could not remove image ${id}: ${(err as Error).message}; remove it with: oneimage delete --force ${id}`, 'warn');
    }
  }
  const deadline = Date.now() + waitMs;
  for (const image of deleted) {
    const end = await deletionEnd(one, image.id, deadline);
    if (end === 'gone') log(`removed image ${image.id}`);
    else if (end === 'pending') log(`image ${image.id} is still being removed by its datastore after ${Math.round(waitMs / 1000)} s; see: oneimage show ${image.id}`, 'warn');
    else if (await holdsNothing(one, end)) {
      await one.imageDelete(image.id, true).then(
        () => log(`removed image ${image.id} (its datastore held nothing for it)`),
        (err: unknown) => log(`could not remove image ${image.id}: ${(err as Error).message}; remove it with: oneimage delete --force ${image.id}`, 'warn'),
      );
    } else {
      const why = oneLine(end.template.get('ERROR') ?? '') || 'its datastore could not remove it';
      log(`could not remove image ${image.id}: ${why}; remove ${end.source || 'its data'} from the datastore, then: oneimage delete --force ${image.id}`, 'warn');
    }
  }
}

/** 'gone', 'pending' past the deadline, or the image left in ERROR by a failed rm. */
async function deletionEnd(one: OneClient, id: number, deadline: number): Promise<'gone' | 'pending' | OneImage> {
  for (let pollMs = 50; ; pollMs = Math.min(pollMs * 2, 1000)) {
    let image: OneImage;
    try {
      image = await one.image(id);
    } catch (err) {
      if ((err as OneswapError).kind === 'not-found') return 'gone';
      throw err;
    }
    if (image.stateName === 'ERROR') return image;
    if (Date.now() >= deadline) return 'pending';
    await sleep(pollMs);
  }
}

/** Whether the image's storage surely holds nothing for it (unsure: false). */
async function holdsNothing(one: OneClient, image: OneImage): Promise<boolean> {
  if (!image.source) return true;
  const storage = imageStorageOf(await one.datastore(image.datastoreId));
  if (storage.kind !== 'files') return false;
  if (storage.bridges.length === 0) return access(image.source).then(() => false, (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
  const r = await onBridge(bridgeHostFor(storage.bridges, image.id), `[ -e ${shellQuote(image.source)} ] && exit 0; [ -d "$(dirname ${shellQuote(image.source)})" ] && exit 1; exit 2`, { timeoutMs: 30_000 }).catch(() => undefined);
  return r?.code === 1;
}
