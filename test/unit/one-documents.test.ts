import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OneswapError } from '../../lib/errors/index.js';
import {
  parseDatastore,
  parseDatastorePool,
  parseImage,
  parseImagePool,
  parseSystemConfig,
  parseUser,
  parseVm,
  parseVmPool,
  parseVmTemplate,
  parseVnet,
} from '../../lib/one/documents.js';

const PERMS = '<PERMISSIONS><OWNER_U>1</OWNER_U><OWNER_M>1</OWNER_M><OWNER_A>0</OWNER_A><GROUP_U>0</GROUP_U><GROUP_M>0</GROUP_M><GROUP_A>0</GROUP_A><OTHER_U>0</OTHER_U><OTHER_M>0</OTHER_M><OTHER_A>0</OTHER_A></PERMISSIONS>';

const image = (opts: { id?: number; cdata?: boolean; vms?: number[]; state?: number } = {}): string => {
  const text = (v: string) => (opts.cdata ? `<![CDATA[${v}]]>` : v.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;'));
  return `<IMAGE><ID>${opts.id ?? 7}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>${text('web01 <disk 0> & more')}</NAME>${PERMS}<TYPE>0</TYPE><DISK_TYPE>0</DISK_TYPE><PERSISTENT>1</PERSISTENT><REGTIME>1700000000</REGTIME><SOURCE>${text('/var/lib/one//datastores/1/5f3c0a')}</SOURCE><PATH></PATH><FORMAT>raw</FORMAT><FS/><SIZE>10240</SIZE><STATE>${opts.state ?? 5}</STATE><PREV_STATE>4</PREV_STATE><RUNNING_VMS>${(opts.vms ?? []).length}</RUNNING_VMS><CLONING_OPS>0</CLONING_OPS><CLONING_ID>-1</CLONING_ID><TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT><DATASTORE_ID>1</DATASTORE_ID><DATASTORE>default</DATASTORE><VMS>${(opts.vms ?? []).map((v) => `<ID>${v}</ID>`).join('')}</VMS><CLONES/><APP_CLONES/><TEMPLATE><DEV_PREFIX>${text('vd')}</DEV_PREFIX><ERROR>${text('Mon Nov 20 10:00:00 2023 : Error copying image in the datastore: cp: cannot stat <x> & y')}</ERROR><VCENTER_VM_MOREF>vm-1234</VCENTER_VM_MOREF></TEMPLATE><SNAPSHOTS><ALLOW_ORPHANS>NO</ALLOW_ORPHANS><CURRENT_BASE>-1</CURRENT_BASE><NEXT_SNAPSHOT>0</NEXT_SNAPSHOT></SNAPSHOTS><BACKUP_INCREMENTS/></IMAGE>`;
};

describe('IMAGE', () => {
  for (const cdata of [false, true]) {
    it(`reads every field, text ${cdata ? 'in CDATA' : 'escaped'}`, () => {
      const img = parseImage(image({ cdata, vms: [3] }));
      assert.equal(img.id, 7);
      assert.equal(img.name, 'web01 <disk 0> & more');
      assert.equal(img.uid, 0);
      assert.equal(img.uname, 'oneadmin');
      assert.equal(img.state, 5);
      assert.equal(img.stateName, 'ERROR');
      assert.equal(img.type, 'OS');
      assert.equal(img.diskType, 0);
      assert.equal(img.persistent, true);
      assert.equal(img.source, '/var/lib/one//datastores/1/5f3c0a');
      assert.equal(img.path, '');
      assert.equal(img.format, 'raw');
      assert.equal(img.fs, '');
      assert.equal(img.sizeMb, 10240);
      assert.equal(img.datastoreId, 1);
      assert.equal(img.datastore, 'default');
      assert.equal(img.runningVms, 1);
      assert.deepEqual(img.vms, [3], 'a single VMS/ID is still a list');
      assert.equal(img.template.get('DEV_PREFIX'), 'vd');
      assert.equal(img.template.get('ERROR'), 'Mon Nov 20 10:00:00 2023 : Error copying image in the datastore: cp: cannot stat <x> & y');
      assert.equal(img.template.get('VCENTER_VM_MOREF'), 'vm-1234');
    });
  }

  it('reads pools of zero, one and many images', () => {
    assert.deepEqual(parseImagePool('<IMAGE_POOL></IMAGE_POOL>'), []);
    assert.deepEqual(parseImagePool(`<IMAGE_POOL>${image({ id: 1 })}</IMAGE_POOL>`).map((i) => i.id), [1]);
    assert.deepEqual(parseImagePool(`<IMAGE_POOL>${image({ id: 1 })}${image({ id: 2, vms: [4, 5] })}</IMAGE_POOL>`).map((i) => i.vms), [[], [4, 5]]);
  });

  it('names unknown states instead of failing', () => {
    assert.equal(parseImage(image({ state: 42 })).stateName, 'UNKNOWN_42');
  });

  it('refuses a document of another kind, malformed XML and missing ids', () => {
    const remote = (e: unknown) => e instanceof OneswapError && e.kind === 'remote';
    assert.throws(() => parseImage('<DATASTORE><ID>1</ID><NAME>x</NAME></DATASTORE>'), remote);
    assert.throws(() => parseImage('<IMAGE><ID>1</ID><NAME>x</NAME>'), remote);
    assert.throws(() => parseImage('<IMAGE><NAME>x</NAME></IMAGE>'), remote);
    assert.throws(() => parseImage('<IMAGE><ID>abc</ID><NAME>x</NAME></IMAGE>'), remote);
  });
});

const datastore = `<DATASTORE><ID>100</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>oneswap</NAME>${PERMS}<DS_MAD><![CDATA[oneswap]]></DS_MAD><TM_MAD><![CDATA[shared]]></TM_MAD><BASE_PATH><![CDATA[/var/lib/one//datastores/100]]></BASE_PATH><TYPE>0</TYPE><DISK_TYPE>0</DISK_TYPE><STATE>0</STATE><CLUSTERS><ID>0</ID></CLUSTERS><TOTAL_MB>102400</TOTAL_MB><FREE_MB>51200</FREE_MB><USED_MB>51200</USED_MB><IMAGES><ID>3</ID><ID>9</ID></IMAGES><TEMPLATE><ALLOW_ORPHANS><![CDATA[NO]]></ALLOW_ORPHANS><DS_MAD><![CDATA[oneswap]]></DS_MAD><RESTRICTED_DIRS><![CDATA[/]]></RESTRICTED_DIRS><SAFE_DIRS><![CDATA[/var/tmp]]></SAFE_DIRS><TYPE><![CDATA[IMAGE_DS]]></TYPE><VCENTER_HOST><![CDATA[vc.example]]></VCENTER_HOST></TEMPLATE></DATASTORE>`;

describe('DATASTORE', () => {
  it('reads drivers in CDATA, BASE_PATH with its //, sizes, clusters and the template', () => {
    const ds = parseDatastore(datastore);
    assert.equal(ds.id, 100);
    assert.equal(ds.type, 'IMAGE_DS');
    assert.equal(ds.dsMad, 'oneswap');
    assert.equal(ds.tmMad, 'shared');
    assert.equal(ds.basePath, '/var/lib/one//datastores/100');
    assert.equal(ds.state, 'READY');
    assert.deepEqual([ds.totalMb, ds.freeMb, ds.usedMb], [102400, 51200, 51200]);
    assert.deepEqual(ds.clusters, [0]);
    assert.deepEqual(ds.images, [3, 9]);
    assert.equal(ds.template.get('SAFE_DIRS'), '/var/tmp');
    assert.equal(ds.template.get('VCENTER_HOST'), 'vc.example');
  });

  it('maps every datastore type', () => {
    const types = [0, 1, 2, 3].map((t) => parseDatastore(datastore.replace('<TYPE>0</TYPE>', `<TYPE>${t}</TYPE>`)).type);
    assert.deepEqual(types, ['IMAGE_DS', 'SYSTEM_DS', 'FILE_DS', 'BACKUP_DS']);
    assert.equal(parseDatastorePool(`<DATASTORE_POOL>${datastore}</DATASTORE_POOL>`).length, 1);
  });
});

describe('VNET', () => {
  it('reads bridge, template attributes and address ranges with leases', () => {
    const vnet = parseVnet(
      `<VNET><ID>3</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>prod</NAME>${PERMS}<CLUSTERS><ID>0</ID></CLUSTERS><BRIDGE>br0</BRIDGE><BRIDGE_TYPE>linux</BRIDGE_TYPE><STATE>1</STATE><VN_MAD>bridge</VN_MAD><VLAN_ID/><TEMPLATE><BRIDGE><![CDATA[br0]]></BRIDGE><VCENTER_NETWORK_MATCH><![CDATA[VM Network]]></VCENTER_NETWORK_MATCH></TEMPLATE><AR_POOL><AR><AR_ID>0</AR_ID><IP>10.0.0.10</IP><MAC>02:00:0a:00:00:0a</MAC><SIZE>10</SIZE><TYPE>IP4</TYPE><USED_LEASES>1</USED_LEASES><LEASES><LEASE><IP>10.0.0.10</IP><MAC>02:00:0a:00:00:0a</MAC><VM>5</VM></LEASE></LEASES></AR><AR><AR_ID>1</AR_ID><MAC>00:50:56:aa:bb:cc</MAC><SIZE>1</SIZE><TYPE>ETHER</TYPE><USED_LEASES>0</USED_LEASES></AR></AR_POOL></VNET>`,
    );
    assert.equal(vnet.bridge, 'br0');
    assert.equal(vnet.vnMad, 'bridge');
    assert.equal(vnet.template.get('VCENTER_NETWORK_MATCH'), 'VM Network');
    assert.equal(vnet.addressRanges.length, 2);
    const [ip4, ether] = vnet.addressRanges;
    assert.deepEqual(
      { id: ip4?.id, type: ip4?.type, ip: ip4?.ip, mac: ip4?.mac, size: ip4?.size, used: ip4?.usedLeases, leases: ip4?.leases },
      { id: 0, type: 'IP4', ip: '10.0.0.10', mac: '02:00:0a:00:00:0a', size: 10, used: 1, leases: [{ ip: '10.0.0.10', ip6: '', mac: '02:00:0a:00:00:0a', vm: 5 }] },
    );
    assert.equal(ether?.mac, '00:50:56:aa:bb:cc', 'MACs stay strings');
    assert.deepEqual(ether?.leases, []);
  });
});

describe('VMTEMPLATE, VM, USER, system config', () => {
  it('reads a VM template with repeated DISKs in order', () => {
    const t = parseVmTemplate(
      `<VMTEMPLATE><ID>4</ID><UID>2</UID><GID>1</GID><UNAME>alice</UNAME><GNAME>users</GNAME><NAME>web01</NAME>${PERMS}<REGTIME>1700000000</REGTIME><TEMPLATE><CPU><![CDATA[2]]></CPU><DESCRIPTION><![CDATA[a "quoted" & <tagged> note]]></DESCRIPTION><DISK><IMAGE_ID><![CDATA[41]]></IMAGE_ID></DISK><NIC><NETWORK_ID>3</NETWORK_ID></NIC><DISK><IMAGE_ID><![CDATA[42]]></IMAGE_ID></DISK></TEMPLATE></VMTEMPLATE>`,
    );
    assert.equal(t.id, 4);
    assert.equal(t.uname, 'alice');
    assert.equal(t.regtime, 1700000000);
    assert.equal(t.template.get('DESCRIPTION'), 'a "quoted" & <tagged> note');
    assert.deepEqual(t.template.attributes.map((a) => a.name), ['CPU', 'DESCRIPTION', 'DISK', 'NIC', 'DISK']);
    assert.deepEqual(t.template.vectors('DISK').map((d) => d.get('IMAGE_ID')), ['41', '42']);
  });

  it('reads a VM with its state, disks and nics', () => {
    const vmXml = (id: number) =>
      `<VM><ID>${id}</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>web01-${id}</NAME>${PERMS}<LAST_POLL>0</LAST_POLL><STATE>3</STATE><LCM_STATE>3</LCM_STATE><TEMPLATE><DISK><DISK_ID><![CDATA[0]]></DISK_ID><DRIVER><![CDATA[raw]]></DRIVER><IMAGE_ID><![CDATA[41]]></IMAGE_ID><SOURCE><![CDATA[/var/lib/one//datastores/1/abc]]></SOURCE><TARGET><![CDATA[vda]]></TARGET></DISK><NIC><NIC_ID>0</NIC_ID><NETWORK_ID>3</NETWORK_ID><MAC>00:50:56:aa:bb:cc</MAC><IP>10.0.0.15</IP></NIC><NIC_ALIAS><PARENT>NIC0</PARENT></NIC_ALIAS></TEMPLATE><USER_TEMPLATE><LABELS>x</LABELS></USER_TEMPLATE></VM>`;
    const vm = parseVm(vmXml(9));
    assert.equal(vm.stateName, 'ACTIVE');
    assert.equal(vm.lcmState, 3);
    assert.deepEqual(vm.disks.map((d) => [d.diskId, d.imageId, d.source, d.driver, d.target]), [[0, 41, '/var/lib/one//datastores/1/abc', 'raw', 'vda']]);
    assert.deepEqual(vm.nics.map((n) => [n.nicId, n.networkId, n.mac, n.ip]), [[0, 3, '00:50:56:aa:bb:cc', '10.0.0.15']]);
    assert.equal(vm.template.vectors('NIC_ALIAS').length, 1);
    assert.equal(vm.userTemplate.get('LABELS'), 'x');
    assert.deepEqual(parseVmPool(`<VM_POOL>${vmXml(1)}${vmXml(2)}</VM_POOL>`).map((v) => v.id), [1, 2]);
  });

  it('reads users and decides who is an admin', () => {
    const user = (id: number, gid: number, groups: number[]) =>
      `<USER><ID>${id}</ID><GID>${gid}</GID><GROUPS>${groups.map((g) => `<ID>${g}</ID>`).join('')}</GROUPS><GNAME>g</GNAME><NAME>u${id}</NAME><PASSWORD>x</PASSWORD><AUTH_DRIVER>core</AUTH_DRIVER><ENABLED>1</ENABLED><LOGIN_TOKEN/><TEMPLATE><SSH_PUBLIC_KEY><![CDATA[ssh-ed25519 AAAA user@host]]></SSH_PUBLIC_KEY></TEMPLATE></USER>`;
    const admin = parseUser(user(0, 0, [0]));
    assert.equal(admin.isAdmin, true);
    assert.equal(admin.sshPublicKey, 'ssh-ed25519 AAAA user@host');
    assert.equal(parseUser(user(5, 1, [1])).isAdmin, false);
    const inOneadmin = parseUser(user(6, 1, [1, 0]));
    assert.equal(inOneadmin.isAdmin, true);
    assert.deepEqual(inOneadmin.groups, [1, 0]);
  });

  it('reads oned.conf from one.system.config as a template', () => {
    const conf = parseSystemConfig(
      '<OPENNEBULA_CONFIGURATION><DATASTORE_LOCATION><![CDATA[/var/lib/one/datastores]]></DATASTORE_LOCATION><DS_MAD_CONF><NAME><![CDATA[fs]]></NAME><PERSISTENT_ONLY><![CDATA[NO]]></PERSISTENT_ONLY></DS_MAD_CONF><DS_MAD_CONF><NAME><![CDATA[oneswap]]></NAME><PERSISTENT_ONLY><![CDATA[NO]]></PERSISTENT_ONLY></DS_MAD_CONF></OPENNEBULA_CONFIGURATION>',
    );
    assert.equal(conf.get('DATASTORE_LOCATION'), '/var/lib/one/datastores');
    assert.deepEqual(conf.vectors('DS_MAD_CONF').map((v) => v.get('NAME')), ['fs', 'oneswap']);
  });
});
