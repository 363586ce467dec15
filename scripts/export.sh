#!/bin/bash
# Write the commits of the work tree since the base back to patches/, as
# `git format-patch` output plus a `series` file.  Deterministic: commit
# ids are zeroed, no signature, names from the subjects; re-exporting an
# unchanged tree changes nothing.  The new series is written aside and
# swapped in whole, so a failed export leaves patches/ as it was.
#
#   export.sh [--check] [TREE]
#   --check: only compare; exit 1 if TREE's series differs from patches/.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi
tree=${1:-$top/build/tree}
[ -d "$tree/.git" ] || die "export: no work tree at $tree; run 'make tree'"

out=$(mktemp -d "$top/build/export.XXXXXX")
trap 'rm -rf "$out"' EXIT
git -C "$tree" format-patch -q --zero-commit --no-signature --no-numbered \
    --subject-prefix=PATCH --no-renames --encoding=UTF-8 --abbrev=12 \
    -o "$out" base..HEAD ||
    die "export: git format-patch failed"
(cd "$out" && ls -1 -- *.patch 2>/dev/null || true) >"$out/series"

if [ $check = 1 ]; then
    diff -r -q "$out" "$top/patches" >/dev/null
    exit $?
fi

if ! diff -r -q "$out" "$top/patches" >/dev/null 2>&1; then
    rm -rf "$top/patches.old"
    [ -d "$top/patches" ] && mv "$top/patches" "$top/patches.old"
    mv "$out" "$top/patches"
    rm -rf "$top/patches.old"
    step "export: patches/ updated ($(wc -l <"$top/patches/series") patch(es))"
else
    step "export: patches/ already up to date"
fi
