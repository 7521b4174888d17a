// virt-v2v's warnings explained for the guest at hand. The Grub2 text and grub.cfg are what the
// Debian test guest really gave (virt-v2v 2.2, the README's demo conversion); the other warning
// texts are virt-v2v's format strings (convert_linux.ml, linux_kernels.ml, convert.ml) filled in.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { defaultEntry, explainWarning, isKnownWarning, nameOnKvm, type BootFiles, type GuestBoot } from '../../lib/convert/v2v-warnings.js';

const GRUB2 = 'could not determine a way to update the configuration of Grub2';
const GRUB_CFG = readFileSync(new URL('../fixtures/boot/debian12-converted-grub.cfg', import.meta.url), 'utf8');
const UUID = 'b9cef25a-c6e0-4340-bb47-fad912418ee7';
const MEANING =
  'virt-v2v warned "could not determine a way to update the configuration of Grub2": the guest has neither grubby nor Perl Bootloader::Tools, so virt-v2v can neither read nor change which kernel GRUB starts by default: GRUB keeps its default entry (virt-v2v still renames disks in fstab and the GRUB settings, and then reruns grub-mkconfig).';

/** The converted Debian test guest's boot files, as the appliance reads them. */
const converted: BootFiles = {
  grubCfg: { path: '/boot/grub/grub.cfg', text: GRUB_CFG },
  fstab: '/dev/vda1 / ext4 errors=remount-ro 0 1\n',
  boot: ['System.map-6.1.0-50-amd64', 'config-6.1.0-50-amd64', 'grub', 'initrd.img-6.1.0-50-amd64', 'initrd.img-6.1.0-50-amd64.pre-v2v', 'vmlinuz-6.1.0-50-amd64'],
};
const debian = (files: BootFiles, virtioBlock = true): GuestBoot => ({ files, virtioBlock, distro: 'debian' });

test('the Grub2 warning on the Debian test guest: harmless, and why', () => {
  assert.equal(isKnownWarning(GRUB2), true);
  const w = explainWarning(GRUB2, debian(converted))!;
  assert.equal(w.harmless, true);
  assert.equal(
    w.text,
    `${MEANING} Harmless for this guest: GRUB starts vmlinuz-6.1.0-50-amd64 by default, the kernel whose initramfs virt-v2v rebuilt with the virtio drivers; /boot/grub/grub.cfg passes root=UUID=${UUID}; /etc/fstab mounts / from /dev/vda1 (its name on virtio-blk): the guest boots.`,
  );
});

test('the Grub2 warning where the guest would not boot: the file, the line and the command', () => {
  // The same guest before virt-v2v's renaming (or on SATA): / is /dev/sda1 in fstab.
  const sda = explainWarning(GRUB2, debian({ ...converted, fstab: '# / was on /dev/sda1\n/dev/sda1 / ext4 errors=remount-ro 0 1\n' }))!;
  assert.equal(sda.harmless, false);
  assert.equal(
    sda.text,
    `${MEANING} Check this guest: /etc/fstab line 2 mounts / from /dev/sda1, which is /dev/vda1 on KVM, so the boot stops there: change it to UUID=… (blkid /dev/vda1 prints it) or /dev/vda1 (fine: GRUB starts vmlinuz-6.1.0-50-amd64 by default, the kernel whose initramfs virt-v2v rebuilt with the virtio drivers; /boot/grub/grub.cfg passes root=UUID=${UUID}).`,
  );

  // grub.cfg made without UUIDs (GRUB_DISABLE_LINUX_UUID=true): root=/dev/sda1 on every entry.
  const byName = GRUB_CFG.replaceAll(`root=UUID=${UUID}`, 'root=/dev/sda1');
  const root = explainWarning(GRUB2, debian({ ...converted, grubCfg: { path: '/boot/grub/grub.cfg', text: byName } }))!;
  assert.equal(
    root.text,
    `${MEANING} Check this guest: /boot/grub/grub.cfg line 99 passes root=/dev/sda1, which is /dev/vda1 on KVM: at the GRUB menu press e and change it to root=/dev/vda1, then after the first boot run update-grub (fine: GRUB starts vmlinuz-6.1.0-50-amd64 by default, the kernel whose initramfs virt-v2v rebuilt with the virtio drivers; /etc/fstab mounts / from /dev/vda1 (its name on virtio-blk)).`,
  );

  // Two kernels; GRUB_DEFAULT=saved points at the older one, whose initramfs virt-v2v did not rebuild.
  const older = GRUB_CFG.replace("menuentry 'Debian GNU/Linux, with Linux 6.1.0-50-amd64 (recovery mode)'", "menuentry 'Debian GNU/Linux, with Linux 6.1.0-9-amd64'")
    .replace(/linux\t\/boot\/vmlinuz-6\.1\.0-50-amd64 (root=\S+ ro single)/, 'linux\t/boot/vmlinuz-6.1.0-9-amd64 $1')
    .replace('   set default="0"', '   set default="${saved_entry}"');
  const saved = explainWarning(GRUB2, debian({ ...converted, grubCfg: { path: '/boot/grub/grub.cfg', text: older }, grubEnv: '# GRUB Environment Block\nsaved_entry=gnulinux-advanced-' + UUID + '>Debian GNU/Linux, with Linux 6.1.0-9-amd64\n', boot: [...converted.boot, 'vmlinuz-6.1.0-9-amd64', 'initrd.img-6.1.0-9-amd64'] }))!;
  assert.equal(saved.harmless, false);
  assert.equal(
    saved.text,
    `${MEANING} Check this guest: GRUB starts vmlinuz-6.1.0-9-amd64 by default (/boot/grub/grub.cfg line 121), but virt-v2v added the virtio drivers to the initramfs of 6.1.0-50-amd64 only: choose that kernel in the GRUB menu at the first boot, then make it the default (GRUB_DEFAULT in /etc/default/grub) and run update-grub (fine: /boot/grub/grub.cfg passes root=UUID=${UUID}; /etc/fstab mounts / from /dev/vda1 (its name on virtio-blk)).`,
  );

  const noCfg = explainWarning(GRUB2, debian({ fstab: converted.fstab!, boot: [] }))!;
  assert.equal(noCfg.text, `${MEANING} Check this guest: no grub.cfg was found under /boot, so oneswap cannot tell what GRUB starts; watch its console at the first boot.`);
});

test('GRUB default entries: index, title, id, submenu paths, saved_entry, next_entry ignored', () => {
  assert.equal(defaultEntry(GRUB_CFG, undefined).entry?.title, 'Debian GNU/Linux', 'set default="0" (the next_entry branch is not the default)');
  const as = (d: string, env?: string): string | undefined => defaultEntry(GRUB_CFG.replace('   set default="0"', `   set default="${d}"`), env).entry?.title;
  assert.equal(as('1>1'), 'Debian GNU/Linux, with Linux 6.1.0-50-amd64 (recovery mode)');
  assert.equal(as(`gnulinux-advanced-${UUID}>gnulinux-6.1.0-50-amd64-advanced-${UUID}`), 'Debian GNU/Linux, with Linux 6.1.0-50-amd64');
  assert.equal(as('Debian GNU/Linux'), 'Debian GNU/Linux');
  assert.equal(as('${saved_entry}', 'saved_entry=1>0\n'), 'Debian GNU/Linux, with Linux 6.1.0-50-amd64');
  assert.equal(as('${saved_entry}', '# GRUB Environment Block\n'), 'Debian GNU/Linux', 'no saved entry: the first');
  assert.deepEqual(defaultEntry(GRUB_CFG.replace('   set default="0"', '   set default="1"'), undefined), { why: 'set default="1" is a submenu' });
  assert.deepEqual(defaultEntry(GRUB_CFG.replace('   set default="0"', '   set default="7"'), undefined), { why: 'set default="7" names no entry' });
  const e = defaultEntry(GRUB_CFG, undefined).entry!;
  assert.deepEqual([e.kernel, e.root, e.rootLine, e.line], ['/boot/vmlinuz-6.1.0-50-amd64', `UUID=${UUID}`, 99, 86]);
});

test('disk names on KVM: vdX on virtio-blk, sdX on SATA, stable names unchanged', () => {
  assert.equal(nameOnKvm('/dev/sda1', true), '/dev/vda1');
  assert.equal(nameOnKvm('/dev/vda1', true), undefined);
  assert.equal(nameOnKvm('/dev/sdb', false), undefined);
  assert.equal(nameOnKvm('/dev/vdb2', false), '/dev/sdb2');
  assert.equal(nameOnKvm('/dev/hda3', true), '/dev/vda3');
  assert.equal(nameOnKvm('/dev/nvme1n1p2', true), '/dev/vdb2');
  for (const stable of [`UUID=${UUID}`, 'LABEL=root', 'PARTUUID=1234-01', '/dev/mapper/vg-root', '/dev/disk/by-uuid/x', '/dev/vg0/root', 'tmpfs']) assert.equal(nameOnKvm(stable, true), undefined, stable);
});

test("virt-v2v's other Linux warnings: meaning and verdict", () => {
  const cases: Array<[string, GuestBoot, boolean, string]> = [
    [
      '/files/etc/fstab/2/spec references unknown device "sdc".  You may have to fix this entry manually after conversion.',
      debian({ ...converted, fstab: '/dev/vda1 / ext4 defaults 0 1\n/dev/sdc1 /data ext4 defaults 0 2\n' }),
      false,
      'virt-v2v warned "/files/etc/fstab/2/spec references unknown device "sdc". You may have to fix this entry manually after conversion.": /etc/fstab (entry 2) names the device sdc, which is none of the VM\'s disks, so virt-v2v could not give it its name on KVM. Check this guest: /etc/fstab line 2 (/dev/sdc1 on /data) waits for a disk the VM does not have, so the boot stops in emergency mode; name it by UUID= or LABEL=, add nofail, or remove the line.',
    ],
    [
      '/files/etc/fstab/2/spec references unknown device "sdc".  You may have to fix this entry manually after conversion.',
      debian({ ...converted, fstab: '/dev/vda1 / ext4 defaults 0 1\n/dev/sdc1 /data ext4 defaults,nofail 0 2\n' }),
      true,
      'virt-v2v warned "/files/etc/fstab/2/spec references unknown device "sdc". You may have to fix this entry manually after conversion.": /etc/fstab (entry 2) names the device sdc, which is none of the VM\'s disks, so virt-v2v could not give it its name on KVM. Harmless for this guest: /etc/fstab line 2 (/dev/sdc1 on /data) has nofail, so the boot goes on without it.',
    ],
    [
      "could not uninstall packages ‘open-vm-tools’: command: dpkg: dependency problems prevent removal of open-vm-tools (ignored)",
      debian(converted),
      true,
      'virt-v2v warned "could not uninstall packages ‘open-vm-tools’: command: dpkg: dependency problems prevent removal of open-vm-tools (ignored)": the packages open-vm-tools (VMware Tools) stay installed in the guest. Harmless for booting: on KVM their services find no VMware hypervisor and stay idle; remove them after the first boot with: apt-get remove open-vm-tools.',
    ],
    [
      'fstrim on guest filesystem /dev/sda2 failed.  Usually you can ignore this message.  To find out more read "Trimming" in virt-v2v(1).\n\nOriginal message: fstrim: fstrim: /sysroot/: FITRIM ioctl failed: Operation not supported',
      debian(converted),
      true,
      'virt-v2v warned "fstrim on guest filesystem /dev/sda2 failed. Usually you can ignore this message. To find out more read "Trimming" in virt-v2v(1). Original message: fstrim: fstrim: /sysroot/: FITRIM ioctl failed: Operation not supported": the free space of /dev/sda2 was not trimmed. Harmless: the guest is unchanged by it; only the disk file keeps blocks the filesystem no longer uses.',
    ],
    [
      'The display driver was updated to ‘modesetting’, but X11 does not seem to be installed in the guest.  X may not function correctly.',
      { files: converted, virtioBlock: true, distro: 'rhel' },
      true,
      'virt-v2v warned "The display driver was updated to ‘modesetting’, but X11 does not seem to be installed in the guest. X may not function correctly.": virt-v2v set the X11 driver to modesetting in the guest\'s xorg.conf, but the guest has no X server. Harmless for a guest without a graphical desktop.',
    ],
    [
      'no initrd was found in /boot matching linux-image-5.10.0-9-amd64 5.10.0-9-amd64.',
      debian(converted),
      true,
      'virt-v2v warned "no initrd was found in /boot matching linux-image-5.10.0-9-amd64 5.10.0-9-amd64.": kernel 5.10.0-9-amd64 (linux-image-5.10.0-9-amd64) has no initramfs, so virt-v2v added no virtio drivers to it. Harmless for this guest: GRUB starts vmlinuz-6.1.0-50-amd64 by default, not that kernel.',
    ],
    [
      'could not rebuild grub2 configuration file (/boot/grub2/grub.cfg).  This may mean that grub output will not be sent to the serial port, but otherwise should be harmless.  Original error message: boom',
      { files: converted, virtioBlock: true, distro: 'rhel' },
      true,
      'virt-v2v warned "could not rebuild grub2 configuration file (/boot/grub2/grub.cfg). This may mean that grub output will not be sent to the serial port, but otherwise should be harmless. Original error message: boom": virt-v2v changed the serial console setting but could not regenerate /boot/grub2/grub.cfg. Harmless for booting (GRUB\'s output may not go to the serial port); after the first boot run: grub2-mkconfig -o /boot/grub2/grub.cfg.',
    ],
  ];
  for (const [warning, boot, harmless, text] of cases) {
    assert.equal(isKnownWarning(warning), true, warning);
    const w = explainWarning(warning, boot)!;
    assert.deepEqual([w.harmless, w.text], [harmless, text]);
  }
});

test('without boot files (the conversion stopped first): the meaning only; unknown warnings are not explained', () => {
  assert.deepEqual(explainWarning(GRUB2, undefined), { warning: GRUB2, harmless: false, text: MEANING });
  const unknown = 'the new RHEL 10 thing could not be done';
  assert.equal(isKnownWarning(unknown), false);
  assert.equal(explainWarning(unknown, debian(converted)), undefined);
});
