// `oneswap convert` refusals, as the real command against the OpenNebula simulator: each one line,
// the right exit code, before any conversion starts (no libguestfs appliance is needed here).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm, writeFile, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OneClient, Template } from '../../lib/one/index.js';
import { startOned, type Oned } from '../peers/one/index.js';
import { oneswap } from '../peers/cli.js';

describe('oneswap convert refuses what it cannot convert', () => {
  let oned: Oned;
  let one: OneClient;
  let env: Record<string, string>;
  let work: string;
  let dsId: number;

  const convert = (args: string[]) => oneswap(['convert', '--endpoint', oned.endpoint, '--progress', 'plain', ...args], env);
  const lastLine = (stderr: string): string => stderr.trim().split('\n').at(-1)!;
  const image = async (name: string, extra: Record<string, string | number> = {}): Promise<number> => {
    const id = await one.imageAllocate(Template.of({ NAME: name, TYPE: 'DATABLOCK', SIZE: 1, FORMAT: 'raw', PERSISTENT: 'YES', ...extra }), dsId);
    await one.waitForImage(id, { pollMs: 50 });
    return id;
  };

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'oneswap-cli-convert-'));
    oned = await startOned({ asyncDelayMs: 10 });
    dsId = await oned.createDatastore({ name: 'images', type: 'IMAGE_DS', dsMad: 'fs', tmMad: 'shared' });
    await writeFile(join(work, 'one_auth'), `${oned.adminSession}\n`, { mode: 0o600 });
    env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, ONE_AUTH: join(work, 'one_auth'), ONESWAP_STATE_DIR: join(work, 'state') };
    one = await OneClient.connect({ endpoint: oned.endpoint, secret: oned.adminSession, env: {} });
  });
  after(async () => {
    one?.close();
    await oned?.stop();
    await rm(work, { recursive: true, force: true });
  });

  test('names the images with --image or --vm, one of them, and proper values', async () => {
    for (const [args, re] of [
      [[], /name the images to convert with --image ID\[,ID\.\.\.\] \(boot disk first\) or --vm NAME, not both/],
      [['--image', '1', '--vm', 'web01'], /not both/],
      [['--image', 'web01'], /--image "web01" is not an image id/],
      [['--image', '1', '--firmware', 'coreboot'], /--firmware "coreboot" is not bios or efi/],
      [['--image', '1', '--context-package', join(work, 'one-context.zip')], /not a \.deb or \.rpm file/],
    ] as Array<[string[], RegExp]>) {
      const r = await convert(args);
      assert.equal(r.exitCode, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(lastLine(r.stderr), re);
    }
  });

  test('an unknown image or VM is not found', async () => {
    const missing = await convert(['--image', '4242']);
    assert.equal(missing.exitCode, 5, missing.stderr);
    const vm = await convert(['--vm', 'never-imported']);
    assert.equal(vm.exitCode, 5, vm.stderr);
    assert.match(lastLine(vm.stderr), /no images of yours were imported from a VM named "never-imported"/);
  });

  test('an image that is neither raw nor qcow2, is in use, or whose file is out of reach is refused', async () => {
    const vmdk = await image('vmdk', { FORMAT: 'vmdk' });
    const r1 = await convert(['--image', String(vmdk)]);
    assert.equal(r1.exitCode, 2, r1.stderr);
    assert.match(lastLine(r1.stderr), new RegExp(`image ${vmdk} \\(vmdk\\) is vmdk; oneswap converts raw and qcow2 images`));

    const used = await image('used');
    const tpl = await one.templateAllocate(Template.of({ NAME: 'uses-it', CPU: 1, MEMORY: 128, DISK: { IMAGE_ID: used } }));
    const vmId = await one.templateInstantiate(tpl, { name: 'running' });
    const r2 = await convert(['--image', String(used)]);
    assert.equal(r2.exitCode, 6, r2.stderr);
    assert.match(lastLine(r2.stderr), new RegExp(`image ${used} \\(used\\) is in use by VM ${vmId}.*must not run while it is converted`));

    const gone = await image('gone');
    await rm((await one.image(gone)).source);
    const r3 = await convert(['--image', String(gone)]);
    assert.equal(r3.exitCode, 2, r3.stderr);
    assert.match(lastLine(r3.stderr), new RegExp(`the files of image ${gone} \\(.+\\) are not reachable from this host`));
    // Nothing was started: no work directory, no conversion log.
    assert.equal((await oned.image(gone))?.template.get('ONESWAP_STATE'), undefined);
  });
});
