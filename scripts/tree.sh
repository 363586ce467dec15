#!/bin/bash
# Create the git work tree build/tree: the base commit plus `git am` of
# every patch named in patches/series.  With QXL_SERIES=spice (spice-tree.sh)
# the same for the spice-server series: build/spice-tree, build/spice-base
# and spice/patches/series.
#
#   tree.sh [DIR]       (default build/tree, or build/spice-tree)
#
# An existing work tree is only replaced when it carries nothing that
# patches/ lacks (no uncommitted changes, no unexported commits), unless
# FORCE=1.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

series_select
tree=${1:-$series_tree}
base=$series_base
patches=$series_patches
what=$(basename "$tree")

[ -d "$base/.git" ] || die "$what: no base source; run 'make ${series_make}base' first"

if [ -d "$tree/.git" ] && [ "${FORCE:-0}" != 1 ]; then
    if [ -n "$(git -C "$tree" status --porcelain --untracked-files=no)" ]; then
        die "$what: $tree has uncommitted changes; commit and 'make ${series_make}export', or FORCE=1 to discard"
    fi
    if ! "$top/scripts/export.sh" --check "$tree" >/dev/null 2>&1; then
        die "$what: $tree has commits that differ from ${patches#"$top/"}/; 'make ${series_make}export' them, or FORCE=1 to discard"
    fi
    if git -C "$tree" merge-base --is-ancestor base HEAD 2>/dev/null &&
       [ "$(git -C "$tree" rev-parse base)" = "$(git -C "$base" rev-parse base)" ]; then
        # Same base, same series: keep the tree (and its file times, so
        # that the build stays incremental).
        step "$what: $tree is up to date with ${patches#"$top/"}/"
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
cp "$base/$series_vfile" "$new/"
echo "$series_vfile" >>"$new/.git/info/exclude"
# nor is the build directory part of the series
echo "/build/" >>"$new/.git/info/exclude"

while read -r p; do
    case $p in ''|\#*) continue ;; esac
    [ -f "$patches/$p" ] || die "$what: ${patches#"$top/"}/series names $p, which does not exist"
    if ! git -C "$new" am -q --committer-date-is-author-date "$patches/$p" 2>"$new.am.log"; then
        cat "$new.am.log" >&2
        git -C "$new" am --abort 2>/dev/null || true
        die "$what: patch $p does not apply to $series_name $(cat "$base/$series_vfile") (see the failing file and hunk above)"
    fi
done <"$patches/series"
rm -f "$new.am.log"

# Keep the build directory (SRC/build) of the old tree: its objects stay
# valid for every file the new tree did not change.
if [ -d "$tree" ]; then
    [ -d "$tree/build" ] && mv "$tree/build" "$new/build"
    rm -rf "$tree.old"; mv "$tree" "$tree.old"
fi
mv "$new" "$tree"
rm -rf "$tree.old"
step "$what: $tree at $(git -C "$tree" rev-list --count base..HEAD) patch(es) on $series_name $(cat "$base/$series_vfile")"
