#!/bin/sh
# Builds the vCenter simulator launchers into test/peers/vcsim/bin/:
#   vcsim      the stock govmomi simulator (src/vcsim)
#   vcsim-cbt  the stock simulator plus the test extension (src/vcsim-cbt)
# GOPATH mode against the Debian govmomi library, no network (reference 2.2).
# Idempotent; does nothing when both binaries are newer than every source.
#   FORCE=1 build.sh   rebuild anyway
set -eu

D=$(cd "$(dirname "$0")" && pwd)
GOVMOMI=/usr/share/gocode/src/github.com/vmware/govmomi/simulator

die() {
	echo "vcsim build: $*" >&2
	exit 1
}

# Up to date? Rebuild when any source (or this script) is newer than a binary.
up_to_date() {
	for bin in "$D/bin/vcsim" "$D/bin/vcsim-cbt"; do
		[ -x "$bin" ] || return 1
		[ -z "$(find "$D/src" "$D/build.sh" -newer "$bin" -print -quit)" ] || return 1
	done
}
if [ "${FORCE:-}" != 1 ] && up_to_date; then
	echo "vcsim build: bin/vcsim and bin/vcsim-cbt are up to date"
	exit 0
fi

command -v go >/dev/null 2>&1 ||
	die "'go' not found. Install it with: apt-get install -y golang-go"
[ -d "$GOVMOMI" ] ||
	die "govmomi library not found at $GOVMOMI. Install it with: apt-get install -y golang-github-vmware-govmomi-dev"

mkdir -p "$D/gopath/src" "$D/bin"
# A reused Go build cache is what makes rebuilds take seconds instead of ~45 s.
export GOCACHE="${GOCACHE:-$D/gopath/.gocache}"
export GO111MODULE=off GOPATH="$D/gopath:/usr/share/gocode" GOPROXY=off GOFLAGS=

for pkg in vcsim vcsim-cbt; do
	ln -sfn "$D/src/$pkg" "$D/gopath/src/$pkg"
	echo "vcsim build: building bin/$pkg"
	(cd "$D/gopath/src/$pkg" && go build -o "$D/bin/$pkg.tmp" .) ||
		die "go build of $pkg failed"
	mv -f "$D/bin/$pkg.tmp" "$D/bin/$pkg"
done
echo "vcsim build: done ($D/bin)"
