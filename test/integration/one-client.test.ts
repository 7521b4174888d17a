// OneClient against the project's OpenNebula simulator (test/peers/one): real XML-RPC over HTTP,
// oned's reply shapes and error codes, and the fs datastore driver run for real.
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import { OneApiError, OneClient, Template } from '../../lib/one/index.js';
import { startOned, type Oned } from '../peers/one/index.js';

describe('OneClient against the OpenNebula simulator', () => {
  let oned: Oned;
  let client: OneClient;
  const env = {}; // nothing from the developer's own ~/.one or ONE_* variables

  before(async () => {
    oned = await startOned({ asyncDelayMs: 50 });
    client = await OneClient.connect({ endpoint: oned.endpoint, secret: oned.adminSession, env });
  });
  after(async () => {
    client?.close();
    await oned?.stop();
  });

  it('connects as oneadmin and reads the version and oned.conf', async () => {
    assert.equal(client.user.name, 'oneadmin');
    assert.equal(client.user.isAdmin, true);
    assert.match(await client.version(), /^\d+\.\d+/);
    const conf = await client.systemConfig();
    assert.ok(conf.size > 0);
  });

  it('refuses wrong credentials with an auth error that does not show the password', async () => {
    await assert.rejects(OneClient.connect({ endpoint: oned.endpoint, secret: 'oneadmin:not-the-password', env }), (e: unknown) => {
      assert.ok(e instanceof OneApiError);
      assert.equal(e.kind, 'auth');
      assert.equal(e.code, 256);
      assert.ok(e.message.startsWith(`OpenNebula at ${oned.endpoint} refused the credentials of user oneadmin: `), e.message);
      assert.ok(!`${e.message} ${e.hint ?? ''} ${e.remoteMessage}`.includes('not-the-password'));
      return true;
    });
  });

  it('tells a plain user from an admin and reads the SSH key', async () => {
    oned.createUser('alice', 'alice-pw', { sshKey: 'ssh-ed25519 AAAA alice@host' });
    const alice = await OneClient.connect({ endpoint: oned.endpoint, secret: 'alice:alice-pw', env });
    try {
      assert.equal(alice.user.isAdmin, false);
      assert.equal(alice.user.sshPublicKey, 'ssh-ed25519 AAAA alice@host');
    } finally {
      alice.close();
    }
  });

  it('reads a datastore: drivers in CDATA, BASE_PATH with //, custom attributes', async () => {
    const id = await oned.createDatastore({
      name: 'oneswap-ds',
      type: 'IMAGE_DS',
      dsMad: 'fs',
      tmMad: 'shared',
      template: { VCENTER_HOST: 'vc.example & <lab>' },
    });
    const ds = await client.datastore(id);
    assert.equal(ds.id, id);
    assert.equal(ds.name, 'oneswap-ds');
    assert.equal(ds.type, 'IMAGE_DS');
    assert.equal(ds.dsMad, 'fs');
    assert.equal(ds.tmMad, 'shared');
    assert.ok(ds.basePath.includes('//'), ds.basePath);
    assert.ok(ds.basePath.endsWith(`/${id}`), ds.basePath);
    assert.equal(ds.template.get('VCENTER_HOST'), 'vc.example & <lab>');
    const all = await client.datastores();
    assert.deepEqual(
      all.map((d) => d.type).filter((t, i, a) => a.indexOf(t) === i).sort(),
      ['FILE_DS', 'IMAGE_DS', 'SYSTEM_DS'],
    );
  });

  describe('images, templates and VMs', () => {
    let imageId: number;
    let templateId: number;
    const description = 'from vCenter: "web01" & <prod>\n\tsecond line, C:\\path\\';

    it('allocates an empty image (mkfs route) and waits until it is READY with a real file', async () => {
      imageId = await client.imageAllocate(
        Template.of({ NAME: 'web01 disk0', TYPE: 'DATABLOCK', SIZE: 16, FORMAT: 'raw', PERSISTENT: 'YES', DEV_PREFIX: 'vd', DESCRIPTION: description }),
        1,
      );
      const image = await client.waitForImage(imageId, { pollMs: 50, timeoutMs: 30_000 });
      assert.equal(image.stateName, 'READY');
      assert.equal(image.name, 'web01 disk0');
      assert.equal(image.sizeMb, 16);
      assert.equal(image.format, 'raw');
      assert.equal(image.persistent, true);
      assert.equal(image.type, 'DATABLOCK');
      assert.equal(image.template.get('DESCRIPTION'), description);
      assert.notEqual(image.source, '');
      assert.equal(statSync(image.source).size, 16 * 1024 * 1024);
      assert.ok((await client.images()).some((i) => i.id === imageId));
    });

    it('reports a taken name as a conflict carrying oned\'s message', async () => {
      await assert.rejects(client.imageAllocate(Template.of({ NAME: 'web01 disk0', TYPE: 'DATABLOCK', SIZE: 1 }), 1), (e: unknown) => {
        assert.ok(e instanceof OneApiError);
        assert.equal(e.kind, 'conflict');
        assert.equal(e.code, 0x4000);
        assert.equal(e.method, 'one.image.allocate');
        assert.match(e.message, /NAME is already taken by IMAGE \d+/);
        return true;
      });
    });

    it('updates image attributes without losing special characters', async () => {
      await client.imageUpdate(imageId, Template.of({ ONESWAP_CHANGE_ID: '52 aa bb/7', NOTE: 'a < b & c' }), 'merge');
      const image = await client.image(imageId);
      assert.equal(image.template.get('ONESWAP_CHANGE_ID'), '52 aa bb/7');
      assert.equal(image.template.get('NOTE'), 'a < b & c');
      assert.equal(image.template.get('DESCRIPTION'), description, 'merge keeps the rest');
    });

    it('allocates a VM template and reads it back unchanged', async () => {
      templateId = await client.templateAllocate(
        Template.of({
          NAME: 'web01',
          CPU: 1,
          VCPU: 2,
          MEMORY: 512,
          DESCRIPTION: description,
          DISK: { IMAGE_ID: imageId },
          OS: { ARCH: 'x86_64', MACHINE: 'q35' },
        }),
      );
      const t = await client.template(templateId);
      assert.equal(t.name, 'web01');
      assert.equal(t.template.get('DESCRIPTION'), description);
      assert.equal(t.template.get('MEMORY'), '512');
      assert.equal(t.template.vector('DISK')?.get('IMAGE_ID'), String(imageId));
      assert.equal(t.template.vector('OS')?.get('MACHINE'), 'q35');
      assert.ok((await client.templates()).some((x) => x.id === templateId));
    });

    it('instantiates the template on the persistent image', async () => {
      const vmId = await client.templateInstantiate(templateId, { name: 'web01-vm', hold: true });
      const vm = await client.vmInfo(vmId);
      assert.equal(vm.name, 'web01-vm');
      assert.equal(vm.stateName, 'HOLD');
      assert.equal(vm.disks.length, 1);
      assert.equal(vm.disks[0]?.imageId, imageId);
      assert.equal(vm.disks[0]?.driver, 'raw');
      assert.ok((await client.vms()).some((v) => v.id === vmId));
      assert.equal((await client.image(imageId)).stateName, 'USED_PERS');

      await client.vmAction('terminate-hard', vmId);
      await waitFor(async () => (await client.image(imageId)).stateName === 'READY');
    });

    it('deletes the template and the image', async () => {
      await client.templateDelete(templateId);
      await assert.rejects(client.template(templateId), (e: unknown) => e instanceof OneswapError && e.kind === 'not-found');
      const source = (await client.image(imageId)).source;
      await client.imageDelete(imageId);
      await waitFor(async () => {
        try {
          await client.image(imageId);
          return false;
        } catch (e) {
          if (e instanceof OneswapError && e.kind === 'not-found') return true;
          throw e;
        }
      });
      assert.equal(existsSync(source), false, 'the datastore rm removed the file');
    });
  });

  it('surfaces the driver error when an image goes to ERROR', async () => {
    oned.setDriverAction('mkfs', () => ({ exitCode: 1, stderr: 'INFO: 1 for oned.log only\nqemu-img: disk full on the datastore\n' }));
    try {
      const id = await client.imageAllocate(Template.of({ NAME: 'doomed', TYPE: 'DATABLOCK', SIZE: 1, FORMAT: 'raw' }), 1);
      await assert.rejects(client.waitForImage(id, { pollMs: 50, timeoutMs: 30_000 }), (e: unknown) => {
        assert.ok(e instanceof OneswapError);
        assert.equal(e.kind, 'remote');
        assert.match(e.message, new RegExp(`^image ${id} \\(doomed\\) failed in datastore 1: .*qemu-img: disk full on the datastore$`));
        return true;
      });
      await client.imageDelete(id, true);
    } finally {
      oned.setDriverAction('mkfs', null);
    }
  });

  it('maps oned failures and XML-RPC faults', async () => {
    await assert.rejects(client.image(99_999), (e: unknown) => {
      assert.ok(e instanceof OneApiError);
      assert.equal(e.kind, 'not-found');
      assert.equal(e.code, 1024);
      assert.match(e.message, /^\[one\.image\.info\] /);
      return true;
    });
    await assert.rejects(client.call('one.image.info', ['not-an-id']), (e: unknown) => e instanceof OneApiError && e.kind === 'internal' && e.code === -501);
    await assert.rejects(client.call('one.no.such.method', []), (e: unknown) => e instanceof OneApiError && e.kind === 'internal' && e.code === -506);
  });

  it('changes owner, type and persistence of an image', async () => {
    const bob = oned.createUser('bob', 'bob-pw');
    const id = await client.imageAllocate(Template.of({ NAME: 'owned', TYPE: 'DATABLOCK', SIZE: 1, FORMAT: 'raw' }), 1);
    await client.waitForImage(id, { pollMs: 50 });
    await client.imagePersistent(id, true);
    await client.imageChtype(id, 'OS');
    await client.imageChown(id, bob, -1);
    const image = await client.image(id);
    assert.deepEqual([image.persistent, image.type, image.uid, image.uname], [true, 'OS', bob, 'bob']);
    await client.imageDelete(id);
  });

  it('reads virtual networks with address ranges and adds one', async () => {
    const id = oned.createNetwork({
      name: 'prod',
      bridge: 'br0',
      template: { VCENTER_NETWORK_MATCH: 'VM Network' },
      ars: [{ type: 'IP4', ip: '10.0.0.10', size: 10 }],
    });
    const vnet = await client.vnet(id);
    assert.equal(vnet.name, 'prod');
    assert.equal(vnet.bridge, 'br0');
    assert.equal(vnet.template.get('VCENTER_NETWORK_MATCH'), 'VM Network');
    assert.equal(vnet.addressRanges.length, 1);
    assert.equal(vnet.addressRanges[0]?.type, 'IP4');
    assert.equal(vnet.addressRanges[0]?.ip, '10.0.0.10');
    assert.equal(vnet.addressRanges[0]?.size, 10);

    await client.vnetAddAr(id, Template.of({ AR: { TYPE: 'ETHER', MAC: '00:50:56:aa:bb:cc', SIZE: 1 } }));
    const after = await client.vnet(id);
    assert.equal(after.addressRanges.length, 2);
    assert.equal(after.addressRanges[1]?.mac, '00:50:56:aa:bb:cc');
    assert.ok((await client.vnets()).some((v) => v.id === id && v.addressRanges.length === 2));
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
