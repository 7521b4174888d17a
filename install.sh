#!/usr/bin/env bash
# Sets oneswap up on a Debian 12 machine (run ./install.sh --help).
#   ./install.sh          Debian packages (apt-get), npm ci, build, then installs oneswap: on an
#                         OpenNebula frontend with its drivers and their oned.conf registration
#   ./install.sh --dev    also what the test suite and benchmarks need; installs nothing outside
#                         this checkout (developers and CI)
set -euo pipefail

usage() {
  cat <<'EOF'
usage: ./install.sh [--no-deps] [--prefix DIR]   install oneswap
       ./install.sh --uninstall [--prefix DIR]   take the installation back out
       ./install.sh --dev                        set this checkout up for development and tests
       ./install.sh --bridge                     prepare a BRIDGE_LIST host of an image datastore

  (none)        Debian packages oneswap runs (apt-get), npm ci, build, then install: on an
                OpenNebula frontend the program, the oneswap command, the datastore and
                marketplace drivers, oneswap.yaml, and the drivers registered in oned.conf
                (backup first; restart oned afterwards); without OpenNebula the command only
  --dev         also the Debian packages of the tests and benchmarks, the vCenter simulator,
                and the Debian test guest with the demo OVA made of it (as root; cached in
                ~/.cache/oneswap-test); installs nothing outside this checkout
  --bridge      on a BRIDGE_LIST host of a file or Ceph image datastore: only the Debian
                packages oneswap runs there over ssh (qemu-utils for qemu-nbd and qemu-img,
                qemu-block-extra for Ceph); needs no Node.js and no copy of oneswap
  --no-deps     no apt-get, npm ci or build: install the build in dist/ as it is
  --prefix DIR  where the command goes when there is no OpenNebula (default /usr/local)
  --uninstall   remove the program, the command and the drivers, unregister them from
                oned.conf (backup first); an edited oneswap.yaml is kept
  -h, --help    this text

environment:
  DESTDIR       stage everything under this root (packagers); default: none
  ONE_LOCATION  a self-contained OpenNebula installed there; default: the system one

where it goes (under DESTDIR):
  OpenNebula (/etc/one/oned.conf): /usr/lib/one/oneswap/, /usr/bin/oneswap,
    /var/lib/one/remotes/{datastore,market}/oneswap/, /etc/one/oneswap.yaml
  ONE_LOCATION ($ONE_LOCATION/etc/oned.conf): $ONE_LOCATION/lib/oneswap/,
    $ONE_LOCATION/bin/oneswap, $ONE_LOCATION/var/remotes/{datastore,market}/oneswap/,
    $ONE_LOCATION/etc/oneswap.yaml
  no OpenNebula: PREFIX/lib/oneswap/, PREFIX/bin/oneswap
EOF
}

die() {
  echo "install.sh: $*" >&2
  exit 1
}

dev=no
deps=yes
mode=install
prefix=/usr/local
prefix_set=no
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) dev=yes ;;
    --no-deps) deps=no ;;
    --uninstall) mode=uninstall ;;
    --bridge) mode=bridge ;;
    --prefix)
      [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }
      prefix=$2; prefix_set=yes; shift ;;
    --prefix=*) prefix=${1#--prefix=}; prefix_set=yes ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (./install.sh --help lists them)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$dev" = yes ] && { [ "$mode" = uninstall ] || [ "$deps" = no ] || [ "$prefix_set" = yes ]; }; then
  echo "install.sh: --dev sets this checkout up and installs nothing; it does not go with --uninstall, --no-deps or --prefix" >&2
  exit 2
fi

# The packages a BRIDGE_LIST host needs, and nothing else.
if [ "$mode" = bridge ]; then
  [ "$dev" = no ] && [ "$prefix_set" = no ] || { echo "install.sh: --bridge installs Debian packages only; it goes with no other option" >&2; exit 2; }
  bridge_pkgs=(qemu-utils qemu-block-extra)
  missing=()
  for p in "${bridge_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root: sudo ./install.sh --bridge"
    echo "==> apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  echo "==> this host can serve as a BRIDGE_LIST host for oneswap (qemu-nbd: $(command -v qemu-nbd))"
  exit 0
fi

# Paths given relative to where install.sh was started from.
absolute() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
destdir=${DESTDIR:-}
[ -z "$destdir" ] || destdir=$(absolute "$destdir")
destdir=${destdir%/}
[ -z "$prefix" ] && { echo "install.sh: --prefix needs a directory" >&2; exit 2; }
prefix=$(absolute "$prefix")
[ "$prefix" = / ] || prefix=${prefix%/}

cd "$(dirname "$0")"
src=$(pwd -P)

# ---------------------------------------------------------------------------------------------
# Where things go (decided before the long steps, so that a wrong target fails at once)

# Can we write there? Say so once instead of failing half-way.
writable() {
  local d=$1
  while [ ! -e "$d" ]; do d=$(dirname "$d"); done
  [ -w "$d" ]
}

if [ "$dev" = no ]; then
  restart_hint="systemctl restart opennebula"
  if [ -n "${ONE_LOCATION:-}" ]; then
    one_location=${ONE_LOCATION%/}
    case "$one_location" in /*) ;; *) die "ONE_LOCATION must be an absolute path (it is $ONE_LOCATION)" ;; esac
    [ -f "$destdir$one_location/etc/oned.conf" ] ||
      die "ONE_LOCATION is $one_location but there is no $destdir$one_location/etc/oned.conf; unset ONE_LOCATION to use the system OpenNebula"
    layout="OpenNebula in ONE_LOCATION=$one_location"
    prog=$one_location/lib/oneswap
    bin=$one_location/bin/oneswap
    remotes=$one_location/var/remotes
    conf=$one_location/etc/oneswap.yaml
    oned=$one_location/etc/oned.conf
    restart_hint="$one_location/bin/one restart (as the oned user)"
  elif [ -f "$destdir/etc/one/oned.conf" ]; then
    layout="OpenNebula (/etc/one/oned.conf)"
    prog=/usr/lib/one/oneswap
    bin=/usr/bin/oneswap
    remotes=/var/lib/one/remotes
    conf=/etc/one/oneswap.yaml
    oned=/etc/one/oned.conf
  else
    layout=
    prog=$prefix/lib/oneswap
    bin=$prefix/bin/oneswap
    remotes='' conf='' oned=''
  fi
  prog=${prog#/}; prog=/$prog
  bin=${bin#/}; bin=/$bin
  if [ -n "$layout" ] && [ "$prefix_set" = yes ]; then
    echo "install.sh: note: --prefix applies only without OpenNebula; ignored"
  fi

  # The oned user owns the drivers and the configuration on a real (not staged) frontend.
  own=no
  if [ -n "$layout" ] && [ -z "$destdir" ] && [ "$(id -u)" -eq 0 ] && id oneadmin >/dev/null 2>&1; then
    own=yes
  fi

  for d in "$destdir$(dirname "$prog")" "$destdir$(dirname "$bin")" ${remotes:+"$destdir$remotes"} ${conf:+"$destdir$(dirname "$conf")"}; do
    writable "$d" || die "cannot write to $d: run as root (sudo ./install.sh), or set DESTDIR or --prefix"
  done
fi

# ---------------------------------------------------------------------------------------------
# Debian packages, npm ci, build

if [ "$mode" = install ] && [ "$deps" = yes ]; then
  # qemu-utils: qemu-img (overlays, commits, checks); nbdkit + libnbd-bin: NBD readers and nbdcopy
  # (virt-v2v 2.2 runs nbdkit without depending on it); util-linux: fallocate (hole punching);
  # virt-v2v: virt-v2v-in-place; libguestfs-tools: guestfish (inspection); guestfs-tools:
  # virt-customize; linux-image-amd64: the kernel libguestfs builds its appliance from;
  # qemu-block-extra: qemu's rbd driver, how images of Ceph datastores are written.
  runtime_pkgs=(qemu-utils qemu-block-extra nbdkit libnbd-bin util-linux ca-certificates virt-v2v libguestfs-tools guestfs-tools linux-image-amd64)
  # golang-go + govmomi sources: the vCenter simulator; curl and time: benchmark baselines; debootstrap: the test guest; qemu-system-x86: booting it to
  # prove a conversion; nbdkit-plugin-python: the VDDK stand-in (test/peers/vddk) the vddk and nfc
  # readers are tested against; ceph-mon, ceph-osd, ceph-common, ceph-mgr: a one-node Ceph
  # (test/peers/ceph) for RBD image datastores (the manager only for `ceph df` statistics);
  # openssh-server: the BRIDGE_LIST host (test/peers/bridge), an sshd each test starts on loopback;
  # chromium: the browser the HTML report of a plan run is opened in, headless (test/support/chromium.ts).
  dev_pkgs=(golang-go golang-github-vmware-govmomi-dev curl time debootstrap qemu-system-x86 nbdkit-plugin-python ceph-mon ceph-osd ceph-common ceph-mgr openssh-server chromium)

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
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$mode" = install ] && [ "$node_major" -lt 20 ]; then
  echo "install.sh: oneswap needs Node.js >= 20 (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

if [ "$mode" = install ] && [ "$deps" = yes ]; then
  echo "==> npm ci"
  npm ci --no-audit --no-fund
  echo "==> build"
  npm run build --silent
fi

if [ "$dev" = yes ]; then
  echo "==> vCenter simulator"
  test/peers/vcsim/build.sh
  # The Debian test guest (debootstrap, about 6 minutes once, cached) packed as a VMware export:
  # the demo OVA the README converts, and the guest the conversion tests use.
  echo "==> test guest and demo OVA"
  demo=$(node --import tsx test/peers/guest/demo-ova.ts)
  echo "==> done: npx oneswap --help${demo:+; the demo: npx oneswap import --ova $demo --output-dir /tmp/oneswap-demo}"
  exit 0
fi

umask 022
node_bin=$(command -v node || true)
case "$node_bin" in /*|'') ;; *) node_bin=$(cd "$(dirname "$node_bin")" && pwd -P)/$(basename "$node_bin") ;; esac
for p in "$prog" "$conf" "$node_bin"; do
  case "$p" in *"'"*|*$'\n'*) die "cannot install with a quote or newline in a path: $p" ;; esac
done

staged=""
[ -z "$destdir" ] || staged=" (staged under DESTDIR=$destdir)"
show() { printf '  %-12s %s\n' "$1" "$2"; }

# put MODE FILE: writes stdin to FILE through a temporary file renamed over it.
put() {
  local tmp
  tmp=$(mktemp "$(dirname "$2")/.oneswap.XXXXXX")
  cat >"$tmp"
  chmod "$1" "$tmp"
  mv -f "$tmp" "$2"
}

sed_escape() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }

# oned.conf through the build's helper (or, when uninstalling without a build, the installed one).
helper=$src/dist/lib/install/main.js
oned_conf() {
  local action=$1 file=$destdir$oned before after
  before=$(cksum <"$file") || exit 1
  "$node_bin" "$helper" "$action" "$file" || exit 1
  after=$(cksum <"$file") || exit 1
  [ "$before" != "$after" ]
}

# ---------------------------------------------------------------------------------------------
# Uninstall

if [ "$mode" = uninstall ]; then
  if [ -n "$layout" ]; then
    echo "install.sh: removing oneswap from $layout$staged"
    [ -n "$node_bin" ] || die "node not found: it is needed to take the drivers out of $oned"
    [ -f "$helper" ] || helper=$destdir$prog/dist/lib/install/main.js
    [ -f "$helper" ] || die "cannot unregister the drivers from $oned: no build in $src/dist and no installed program: run npm run build first"
    changed=no
    oned_conf unregister && changed=yes
  else
    echo "install.sh: no OpenNebula here: removing the oneswap command from $prefix$staged"
  fi
  if [ -d "$destdir$prog" ]; then rm -rf "$destdir$prog"; show removed "$prog"; fi
  if [ -f "$destdir$bin" ]; then
    if grep -q "installed by oneswap's install.sh" "$destdir$bin"; then
      rm -f "$destdir$bin"; show removed "$bin"
    else
      show kept "$bin: not written by install.sh"
    fi
  fi
  if [ -n "$layout" ]; then
    for kind in datastore market; do
      d=$destdir$remotes/$kind/oneswap
      if [ -d "$d" ]; then rm -rf "$d"; show removed "$remotes/$kind/oneswap"; fi
    done
    if [ -f "$destdir$conf" ]; then
      if cmp -s "$src/templates/oneswap.yaml" "$destdir$conf"; then
        rm -f "$destdir$conf"; show removed "$conf"
      else
        show kept "$conf: it differs from the shipped default (your settings); remove it by hand if unwanted"
      fi
    fi
    if [ -f "$destdir$conf.new" ]; then rm -f "$destdir$conf.new"; show removed "$conf.new"; fi
    if [ "$changed" = yes ]; then
      echo "install.sh: datastores and marketplaces that use oneswap (DS_MAD/MARKET_MAD oneswap) stop working: change or remove them"
      echo "restart oned to unload the drivers: $restart_hint"
    fi
  fi
  echo "install.sh: oneswap uninstalled"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Install

if [ ! -f dist/lib/cli/main.js ] || [ ! -f "$helper" ]; then
  die "no build in $src/dist: run npm run build first (or ./install.sh without --no-deps)"
fi
[ -f templates/oneswap.yaml ] || die "no templates/oneswap.yaml in $src: is this a oneswap checkout?"
module_list=$("$node_bin" "$helper" modules "$src")
# Refuse before anything is copied: an oned.conf we cannot register in, a oneswap command of
# someone else's.
[ -z "$oned" ] || "$node_bin" "$helper" check "$destdir$oned"
if [ -e "$destdir$bin" ] && ! grep -qs "installed by oneswap's install.sh" "$destdir$bin"; then
  die "$destdir$bin exists and install.sh did not write it: move it away and run again"
fi

if [ -n "$layout" ]; then
  echo "install.sh: installing oneswap into $layout$staged"
else
  echo "install.sh: no OpenNebula here (no /etc/one/oned.conf, ONE_LOCATION unset): installing the oneswap command only, under $prefix$staged"
fi

# The program: the build, package.json and the production node_modules, swapped in whole.
parent=$destdir$(dirname "$prog")
mkdir -p "$parent"
stage=$(mktemp -d "$parent/.oneswap.install.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/dist" "$stage/node_modules"
tar -C dist --exclude='*.map' -cf - lib | tar -C "$stage/dist" --no-same-owner -xf -
cp package.json "$stage/package.json"
modules=()
[ -z "$module_list" ] || mapfile -t modules <<<"$module_list"
[ "${#modules[@]}" -eq 0 ] || tar -cf - "${modules[@]}" | tar -C "$stage" --no-same-owner -xf -
chmod 0755 "$stage"
rm -rf "$destdir$prog"
mv "$stage" "$destdir$prog"
trap - EXIT
show program "$prog (dist/lib, package.json, ${#modules[@]} production modules)"

mkdir -p "$destdir$(dirname "$bin")"
put 0755 "$destdir$bin" <<EOF
#!/bin/sh
# The oneswap command, installed by oneswap's install.sh (install.sh --uninstall removes it).
exec '$node_bin' '$prog/dist/lib/cli/main.js' "\$@"
EOF
show command "$bin"

if [ -z "$layout" ]; then
  echo "install.sh: done; no OpenNebula drivers were installed (no oned.conf found)"
  exit 0
fi

# The drivers: each action a real file, the shim with the paths filled in.
subst="s|@NODE@|$(sed_escape "$node_bin")|g; s|@ONESWAP_HOME@|$(sed_escape "$prog")|g; s|@ONESWAP_CONFIG@|$(sed_escape "$conf")|g"
for kind in datastore market; do
  d=$destdir$remotes/$kind/oneswap
  rm -rf "$d"
  mkdir -p "$d"
  n=0
  for f in "driver/$kind/oneswap"/*; do
    sed -e "$subst" "$f" >"$d/${f##*/}"
    n=$((n + 1))
  done
  chmod 0755 "$d"/*
  [ "$own" = no ] || chown -R oneadmin:oneadmin "$d"
  show "$kind" "$remotes/$kind/oneswap ($n actions)"
done

# oneswap.yaml: an edited one is kept, the new default goes beside it.
conf_mode=0644
[ "$own" = no ] || conf_mode=0640
mkdir -p "$destdir$(dirname "$conf")"
if [ -e "$destdir$conf" ] && ! cmp -s templates/oneswap.yaml "$destdir$conf"; then
  put "$conf_mode" "$destdir$conf.new" <templates/oneswap.yaml
  [ "$own" = no ] || chown oneadmin:oneadmin "$destdir$conf.new"
  show config "$conf kept: it differs from the shipped default; the new default is in $conf.new"
else
  put "$conf_mode" "$destdir$conf" <templates/oneswap.yaml
  [ "$own" = no ] || chown oneadmin:oneadmin "$destdir$conf"
  rm -f "$destdir$conf.new"
  show config "$conf"
fi

changed=no
oned_conf register && changed=yes
if [ "$changed" = yes ]; then
  echo "restart oned to load the drivers: $restart_hint"
else
  echo "install.sh: done; oned.conf already had the drivers registered"
fi
