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

# qemu-utils: qemu-img (placeholders, checks); nbdkit + libnbd-bin: NBD readers and nbdcopy;
# util-linux: fallocate (hole punching).
runtime_pkgs=(qemu-utils nbdkit libnbd-bin util-linux ca-certificates)
# golang-go + govmomi sources: the vCenter simulator; curl + time: benchmark baselines.
dev_pkgs=(golang-go golang-github-vmware-govmomi-dev curl time)

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
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

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
