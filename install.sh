#!/usr/bin/env bash
# Sets oneswap up on a Debian 12 machine: Debian packages (apt-get), npm ci, build.
#   ./install.sh          the program and the external tools it runs
#   ./install.sh --dev    also what the test suite and benchmarks need (Go + govmomi for the
#                         vCenter simulator, which it builds), for developers and CI
# Installing into an OpenNebula frontend (drivers, oned.conf) comes with the drivers issue.
set -euo pipefail

cd "$(dirname "$0")"
dev=no
for arg in "$@"; do
  case "$arg" in
    --dev) dev=yes ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

# qemu-utils: qemu-img (overlays, commits, checks); nbdkit + libnbd-bin: NBD readers and nbdcopy
# (virt-v2v 2.2 runs nbdkit without depending on it); util-linux: fallocate (hole punching);
# virt-v2v: virt-v2v-in-place; libguestfs-tools: guestfish (inspection); guestfs-tools:
# virt-customize; linux-image-amd64: the kernel libguestfs builds its appliance from.
runtime_pkgs=(qemu-utils nbdkit libnbd-bin util-linux ca-certificates virt-v2v libguestfs-tools guestfs-tools linux-image-amd64)
# golang-go + govmomi sources: the vCenter simulator; curl + time: benchmark baselines;
# debootstrap: the test guest; qemu-system-x86: booting it to prove a conversion.
dev_pkgs=(golang-go golang-github-vmware-govmomi-dev curl time debootstrap qemu-system-x86)

pkgs=("${runtime_pkgs[@]}")
[ "$dev" = yes ] && pkgs+=("${dev_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    echo "  run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  # INITRD=No: the host kernel is only read by libguestfs, which needs no initramfs for it;
  # building one would cost minutes.
  DEBIAN_FRONTEND=noninteractive INITRD=No apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# libguestfs builds its appliance from the host kernel: the OpenNebula user must be able to read it.
for k in /boot/vmlinuz-*; do
  [ -e "$k" ] || continue
  if [ ! -r "$k" ] || [ "$(stat -c %a "$k")" = 600 ]; then
    echo "install.sh: note: $k is readable by root only; guest conversion as oneadmin needs: chmod 0644 $k" >&2
  fi
done

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "install.sh: oneswap needs Node.js >= 20 (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

echo "==> npm ci"
npm ci --no-audit --no-fund
echo "==> build"
npm run build --silent

if [ "$dev" = yes ]; then
  echo "==> vCenter simulator"
  test/peers/vcsim/build.sh
fi
echo "==> done: node dist/lib/cli/main.js --help"
