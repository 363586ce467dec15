#!/bin/bash
# Create the git work tree build/tree: the base commit plus `git am` of
# every patch named in patches/series.
#
#   tree.sh [DIR]       (default build/tree)
#
# An existing work tree is only replaced when it carries nothing that
# patches/ lacks (no uncommitted changes, no unexported commits), unless
# FORCE=1.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

tree=${1:-$top/build/tree}
base=$top/build/base

[ -d "$base/.git" ] || die "tree: no base source; run 'make base' first"

if [ -d "$tree/.git" ] && [ "${FORCE:-0}" != 1 ]; then
    if [ -n "$(git -C "$tree" status --porcelain --untracked-files=no)" ]; then
        die "tree: $tree has uncommitted changes; commit and 'make export', or FORCE=1 to discard"
    fi
    if ! "$top/scripts/export.sh" --check "$tree" >/dev/null 2>&1; then
        die "tree: $tree has commits that differ from patches/; 'make export' them, or FORCE=1 to discard"
    fi
    if git -C "$tree" merge-base --is-ancestor base HEAD 2>/dev/null &&
       [ "$(git -C "$tree" rev-parse base)" = "$(git -C "$base" rev-parse base)" ]; then
        # Same base, same series: keep the tree (and its file times, so
        # that the build stays incremental).
        step "tree: $tree is up to date with patches/"
        exit 0
    fi
fi

new=$tree.new
rm -rf "$new"
git clone -q --no-checkout "$base" "$new"
git -C "$new" checkout -q -b work base
git -C "$new" config user.name "qxl-async"
git -C "$new" config user.email "qxl-async@invalid"
git -C "$new" config am.threeWay false
# Run checkpatch's notion of the base from the clone too.
cp "$base/.qxl-base-version" "$new/"
echo ".qxl-base-version" >>"$new/.git/info/exclude"

while read -r p; do
    case $p in ''|\#*) continue ;; esac
    [ -f "$top/patches/$p" ] || die "tree: patches/series names $p, which does not exist"
    if ! git -C "$new" am -q --committer-date-is-author-date "$top/patches/$p" 2>"$new.am.log"; then
        cat "$new.am.log" >&2
        git -C "$new" am --abort 2>/dev/null || true
        die "tree: patch $p does not apply to QEMU $(cat "$base/.qxl-base-version") (see the failing file and hunk above)"
    fi
done <"$top/patches/series"
rm -f "$new.am.log"

# Keep the build directory (SRC/build) of the old tree: its objects stay
# valid for every file the new tree did not change.
if [ -d "$tree" ]; then
    [ -d "$tree/build" ] && mv "$tree/build" "$new/build"
    rm -rf "$tree.old"; mv "$tree" "$tree.old"
fi
mv "$new" "$tree"
rm -rf "$tree.old"
step "tree: $tree at $(git -C "$tree" rev-list --count base..HEAD) patch(es) on QEMU $(cat "$base/.qxl-base-version")"
