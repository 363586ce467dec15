#!/bin/bash
# Fetch QEMU 10.0.x as Debian 13 (trixie) ships it, verified by apt against
# the archive's signed indexes, extract it with dpkg-source (so Debian's own
# packaging patches apply) and commit it as the base of a git repository at
# build/base.  Re-running is cheap: nothing happens if build/base already
# holds the version the archive offers.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

base=$top/build/base
dl=$top/build/dl

if [ -n "${QXL_OFFLINE:-}" ] && [ -f "$base/.qxl-base-version" ]; then
    step "base: QEMU $(cat "$base/.qxl-base-version") (offline)"
    exit 0
fi

step "base: updating the private trixie source index"
"$top/scripts/apt-private.sh" trixie apt-get update -q >/dev/null ||
    die "base: cannot reach Debian's archive (apt-get update for trixie failed)"

version=$("$top/scripts/apt-private.sh" trixie apt-cache showsrc qemu |
          awk '/^Version:/ { print $2 }' | sort -V | tail -1)
[ -n "$version" ] || die "base: Debian trixie offers no 'qemu' source package"
case $version in
    *:10.0.*) ;;
    *) die "base: trixie's qemu is $version, not 10.0.x; the series targets 10.0" ;;
esac

if [ -f "$base/.qxl-base-version" ] &&
   [ "$(cat "$base/.qxl-base-version")" = "$version" ] &&
   git -C "$base" rev-parse -q --verify refs/tags/base >/dev/null; then
    step "base: QEMU $version (Debian trixie), already extracted"
    exit 0
fi

step "base: downloading qemu $version source (apt verifies it)"
rm -rf "$dl"; mkdir -p "$dl"
(cd "$dl" &&
 "$top/scripts/apt-private.sh" trixie apt-get source -q --download-only \
    "qemu=$version" >/dev/null) ||
    die "base: apt-get source qemu=$version failed"
dsc=$(ls "$dl"/qemu_*.dsc)

step "base: extracting with dpkg-source (applies Debian's patches)"
tmp=$top/build/base.new
rm -rf "$tmp"
dpkg-source --no-check -x "$dsc" "$tmp" >/dev/null ||
    die "base: dpkg-source -x $dsc failed"
rm -rf "$tmp/.pc"

git -C "$tmp" init -q -b debian
git -C "$tmp" config user.name "qxl-async"
git -C "$tmp" config user.email "qxl-async@invalid"
git -C "$tmp" add -A -f .
GIT_AUTHOR_DATE="2000-01-01T00:00:00Z" GIT_COMMITTER_DATE="2000-01-01T00:00:00Z" \
    git -C "$tmp" commit -q -m "QEMU $version (Debian trixie source package)"
git -C "$tmp" tag base
echo "$version" >"$tmp/.qxl-base-version"
echo ".qxl-base-version" >>"$tmp/.git/info/exclude"

rm -rf "$base"
mv "$tmp" "$base"
rm -rf "$dl"
step "base: QEMU $version (Debian trixie) at build/base"
