// Taking back a failed run's images, against a stand-in oned that deletes as oned does (the
// datastore's rm decides: gone, or ERROR): "removed" only for images that are gone; a force only
// for a LOCKED placeholder or one whose rm failed on storage holding nothing; an image whose data
// may still be there stays, with what to do.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OneswapError } from '../../lib/errors/index.js';
import { Template, type OneClient, type OneDatastore, type OneImage } from '../../lib/one/index.js';
import { removeImages } from '../../lib/output/image-removal.js';

/** What the datastore's rm does with an image once deleted (without force). */
type RmOutcome = 'gone' | 'error' | 'hangs';

interface FakeImage {
  id: number;
  stateName: string;
  source: string;
  rm: RmOutcome;
}

function fakeOne(images: FakeImage[], ds: Partial<OneDatastore>): { one: OneClient; deletes: Array<[number, boolean]> } {
  const deletes: Array<[number, boolean]> = [];
  const byId = new Map(images.map((i) => [i.id, i]));
  const one = {
    image: async (id: number): Promise<OneImage> => {
      const i = byId.get(id);
      if (!i) throw new OneswapError('not-found', `image ${id} does not exist`);
      return { id, name: `img-${id}`, stateName: i.stateName, source: i.source, datastoreId: 100, template: Template.of(i.stateName === 'ERROR' ? { ERROR: 'Error removing image from datastore. Retry the operation' } : {}) } as unknown as OneImage;
    },
    imageDelete: async (id: number, force = false): Promise<void> => {
      deletes.push([id, force]);
      const i = byId.get(id)!;
      if (force || i.rm === 'gone') byId.delete(id);
      else if (i.rm === 'error') i.stateName = 'ERROR';
      else i.stateName = 'DELETE';
    },
    datastore: async (): Promise<OneDatastore> => ({ id: 100, name: 'files', dsMad: 'fs', tmMad: 'shared', template: Template.of({}), ...ds }) as unknown as OneDatastore,
  };
  return { one: one as unknown as OneClient, deletes };
}

describe('removing a failed run\'s images', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'oneswap-removal-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('gone images are "removed"; a LOCKED placeholder is deleted by force, the others not', async () => {
    const { one, deletes } = fakeOne(
      [
        { id: 1, stateName: 'READY', source: join(dir, 'a'), rm: 'gone' },
        { id: 2, stateName: 'LOCKED', source: '', rm: 'hangs' },
      ],
      {},
    );
    const lines: string[] = [];
    await removeImages(one, [2, 1], (l, level) => lines.push(`${level ?? 'info'} ${l}`));
    assert.deepEqual(deletes, [[2, true], [1, false]]);
    assert.deepEqual(lines, ['info removed image 2', 'info removed image 1']);
  });

  test('an rm that failed on a file that is not there ends in a forced delete; one whose file is there stays in ERROR, with what to do', async () => {
    const present = join(dir, 'present');
    await writeFile(present, 'data');
    const { one, deletes } = fakeOne(
      [
        { id: 3, stateName: 'READY', source: join(dir, 'missing'), rm: 'error' },
        { id: 4, stateName: 'READY', source: present, rm: 'error' },
      ],
      {},
    );
    const lines: string[] = [];
    await removeImages(one, [3, 4], (l, level) => lines.push(`${level ?? 'info'} ${l}`));
    assert.deepEqual(deletes, [[3, false], [4, false], [3, true]]);
    assert.deepEqual(lines, [
      'info removed image 3 (its datastore held nothing for it)',
      `warn could not remove image 4: Error removing image from datastore. Retry the operation; remove ${present} from the datastore, then: oneimage delete --force 4`,
    ]);
  });

  test('an RBD image whose rm failed is never dropped by force (its data may be there); an rm that takes too long is said to be pending', async () => {
    const { one, deletes } = fakeOne(
      [
        { id: 5, stateName: 'READY', source: 'one/one-5', rm: 'error' },
        { id: 6, stateName: 'READY', source: 'one/one-6', rm: 'hangs' },
      ],
      { dsMad: 'ceph', tmMad: 'ceph' },
    );
    const lines: string[] = [];
    await removeImages(one, [5, 6], (l, level) => lines.push(`${level ?? 'info'} ${l}`), 1000);
    assert.deepEqual(deletes, [[5, false], [6, false]]);
    assert.deepEqual(lines, [
      'warn could not remove image 5: Error removing image from datastore. Retry the operation; remove one/one-5 from the datastore, then: oneimage delete --force 5',
      'warn image 6 is still being removed by its datastore after 1 s; see: oneimage show 6',
    ]);
  });
});
