#!/bin/sh
# Builds a small Debian 12 guest disk that looks like a VMware guest, from Debian packages only
# (reference toolchain section 3):
#   - debootstrap from the mirror apt already uses (no network beyond it);
#   - one MBR partition, ext4, grub on the disk, serial console;
#   - /etc/fstab by device name (/dev/sda1) and ens192 in /etc/network/interfaces, as on ESXi;
#   - an initramfs with only the drivers a VMware guest has (vmw_pvscsi, mptspi, ahci…, no
#     virtio), so it drops to the initramfs shell on virtio-blk until it is converted;
#   - open-vm-tools installed (the conversion removes it);
#   - a report on the serial console once the network is up (or after 60 s without it):
#     "oneswap-netreport: links: …", "oneswap-netreport: ipv4: <if>=<addr> …", then "… done",
#     so a boot check can tell whether the guest came up on the network.
# Needs root (debootstrap, chroot) and libguestfs (guestfish) for the disk.
#   build.sh OUT.raw        about 6 minutes; writes OUT.raw only when everything succeeded
# The test suite calls it through test/peers/guest/index.ts, which caches the result keyed by the
# hash of this file: change the recipe here and the next run rebuilds.
set -eu

OUT=${1:?usage: build.sh OUT.raw}
SIZE=${GUEST_DISK_SIZE:-3G}
PASSWORD=oneswap

die() {
	echo "guest build: $*" >&2
	exit 1
}
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap and chroot)"
for c in debootstrap guestfish; do
	command -v "$c" >/dev/null 2>&1 || die "$c is missing (./install.sh --dev installs it)"
done

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/oneswap-guest.XXXXXX")
ROOT=$WORK/root
cleanup() {
	for m in dev/pts dev proc sys; do
		mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m"
	done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$MIRROR" ] || MIRROR=http://deb.debian.org/debian

echo "guest build: debootstrap bookworm from $MIRROR"
debootstrap --variant=minbase \
	--include=linux-image-amd64,systemd-sysv,udev,kmod,grub-pc-bin,grub2-common,initramfs-tools,e2fsprogs,ifupdown,isc-dhcp-client,iproute2,open-vm-tools,zstd \
	bookworm "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
	{ tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }

echo "guest build: configure as a VMware guest"
echo oneswap-guest >"$ROOT/etc/hostname"
printf '/dev/sda1 / ext4 errors=remount-ro 0 1\n' >"$ROOT/etc/fstab"
cat >"$ROOT/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback

allow-hotplug ens192
iface ens192 inet dhcp
EOF
cat >"$ROOT/usr/local/sbin/oneswap-netreport" <<'EOF'
#!/bin/sh
# oneswap test guest: waits up to 60 s for an IPv4 address on a NIC, then says on the console
# which NICs there are and what addresses they have. Through the kernel's log (the console is
# ttyS0): a write to /dev/ttyS0 itself is lost when the serial getty hangs the line up meanwhile.
i=0
while [ "$i" -lt 60 ] && [ -z "$(ip -o -4 addr show scope global)" ]; do
	sleep 1
	i=$((i + 1))
done
echo "<2>oneswap-netreport: links: $(ip -o link show | awk -F': ' '$2 != "lo" {printf "%s ", $2}')" >/dev/kmsg
echo "<2>oneswap-netreport: ipv4: $(ip -o -4 addr show scope global | awk '{printf "%s=%s ", $2, $4}')" >/dev/kmsg
echo "<2>oneswap-netreport: done" >/dev/kmsg
EOF
chmod 0755 "$ROOT/usr/local/sbin/oneswap-netreport"
cat >"$ROOT/etc/systemd/system/oneswap-netreport.service" <<'EOF'
[Unit]
Description=oneswap test guest: report the network on the serial console
After=networking.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/oneswap-netreport

[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
ln -s /etc/systemd/system/oneswap-netreport.service "$ROOT/etc/systemd/system/multi-user.target.wants/oneswap-netreport.service"
cat >"$ROOT/etc/default/grub" <<'EOF'
GRUB_DEFAULT=0
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200 net.ifnames=1"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --speed=115200"
EOF
# The host-only initramfs of a VMware guest: its storage drivers, no virtio.
sed -i 's/^MODULES=.*/MODULES=list/' "$ROOT/etc/initramfs-tools/initramfs.conf"
printf '%s\n' ext4 vmw_pvscsi mptspi sd_mod ata_piix ahci >"$ROOT/etc/initramfs-tools/modules"
for m in proc sys dev dev/pts; do mount --bind "/$m" "$ROOT/$m"; done
chroot "$ROOT" sh -c "echo root:$PASSWORD | chpasswd"
chroot "$ROOT" update-initramfs -u -k all >"$WORK/initramfs.log" 2>&1 ||
	{ tail -20 "$WORK/initramfs.log" >&2; die "update-initramfs failed"; }
for m in dev/pts dev proc sys; do umount -l "$ROOT/$m"; done
# Smaller disk, same guest: package caches, documentation and translations go.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
	"$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'en*' ! -name locale.alias -exec rm -rf {} +

echo "guest build: disk ($SIZE, one ext4 partition, grub)"
tar -C "$ROOT" --numeric-owner -cf "$WORK/root.tar" .
truncate -s "$SIZE" "$WORK/disk.raw"
# A /dev/kvm that qemu cannot start a guest on (nested virtualization: "failed to set MSR 0x10a")
# makes the appliance abort: run it emulated then, as oneswap does (lib/convert/appliance.ts).
if [ -z "${LIBGUESTFS_BACKEND_SETTINGS:-}" ] && [ -w /dev/kvm ] &&
	! echo quit | qemu-system-x86_64 -machine accel=kvm -cpu max -nodefaults -no-user-config -display none -S -monitor stdio >/dev/null 2>&1; then
	echo "guest build: qemu cannot start a guest on /dev/kvm here: the appliance runs emulated"
	export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
fi
LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct} guestfish --format=raw -a "$WORK/disk.raw" >"$WORK/guestfish.log" 2>&1 <<EOF ||
run
part-init /dev/sda mbr
part-add /dev/sda p 2048 -1
part-set-bootable /dev/sda 1 true
mkfs ext4 /dev/sda1
mount /dev/sda1 /
tar-in $WORK/root.tar /
command "grub-install --target=i386-pc /dev/sda"
command "update-grub"
fstrim /
umount-all
EOF
	{ tail -20 "$WORK/guestfish.log" >&2; die "guestfish failed"; }

mv "$WORK/disk.raw" "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "guest build: done ($OUT)"
