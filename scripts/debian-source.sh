#!/bin/bash
# Fetch the newest version of a Debian source package that an apt-private.sh
# configuration offers, verified by apt against the archive's signed
# indexes, extract it with dpkg-source (so Debian's own packaging patches
# apply) and commit it, tagged `base`, as a git repository at DEST.  DEST's
# VERSION_FILE (excluded from git) names the version; nothing happens if DEST
# already holds the version the archive offers, or, with QXL_OFFLINE set,
# any version.
#
#   debian-source.sh SUITE PACKAGE DEST VERSION_FILE NAME [VERSION_PATTERN]
#
# SUITE is an apt-private.sh configuration (trixie, sid); NAME names the
# source in messages and in the commit (QEMU, spice); VERSION_PATTERN, a
# shell pattern, is the versions the caller accepts (e.g. '*:10.0.*').
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

suite=$1 pkg=$2 base=$3 vfile=$4 name=$5 want=${6:-*}
what=$(basename "$base")
dl=$base.dl

if [ -n "${QXL_OFFLINE:-}" ] && [ -f "$base/$vfile" ]; then
    step "$what: $name $(cat "$base/$vfile") (offline)"
    exit 0
fi

step "$what: updating the private $suite source index"
"$top/scripts/apt-private.sh" "$suite" apt-get update -q >/dev/null ||
    die "$what: cannot reach Debian's archive (apt-get update for $suite failed)"

version=$("$top/scripts/apt-private.sh" "$suite" apt-cache showsrc "$pkg" |
          awk '/^Version:/ { print $2 }' | sort -V | tail -1)
[ -n "$version" ] || die "$what: Debian $suite offers no '$pkg' source package"
# shellcheck disable=SC2254
case $version in
    $want) ;;
    *) die "$what: $suite's $pkg is $version, not $want; the series targets that" ;;
esac

if [ -f "$base/$vfile" ] &&
   [ "$(cat "$base/$vfile")" = "$version" ] &&
   git -C "$base" rev-parse -q --verify refs/tags/base >/dev/null; then
    step "$what: $name $version (Debian $suite), already extracted"
    exit 0
fi

step "$what: downloading $pkg $version source (apt verifies it)"
rm -rf "$dl"; mkdir -p "$dl"
(cd "$dl" &&
 "$top/scripts/apt-private.sh" "$suite" apt-get source -q --download-only \
    "$pkg=$version" >/dev/null) ||
    die "$what: apt-get source $pkg=$version failed"
dsc=$(ls "$dl/${pkg}_"*.dsc)

step "$what: extracting with dpkg-source (applies Debian's patches)"
tmp=$base.new
rm -rf "$tmp"
dpkg-source --no-check -x "$dsc" "$tmp" >/dev/null ||
    die "$what: dpkg-source -x $dsc failed"
rm -rf "$tmp/.pc"

git -C "$tmp" init -q -b debian
git -C "$tmp" config user.name "qxl-async"
git -C "$tmp" config user.email "qxl-async@invalid"
# -f: also what the source's own .gitignore files name (subprojects/ too)
git -C "$tmp" add -A -f .
GIT_AUTHOR_DATE="2000-01-01T00:00:00Z" GIT_COMMITTER_DATE="2000-01-01T00:00:00Z" \
    git -C "$tmp" commit -q -m "$name $version (Debian $suite source package)"
git -C "$tmp" tag base
echo "$version" >"$tmp/$vfile"
echo "$vfile" >>"$tmp/.git/info/exclude"

rm -rf "$base"
mv "$tmp" "$base"
rm -rf "$dl"
step "$what: $name $version (Debian $suite) at ${base#"$top/"}"
