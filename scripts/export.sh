#!/bin/bash
# Write the commits of the work tree since the base back to patches/, as
# `git format-patch` output plus a `series` file.  Deterministic: commit
# ids are zeroed, no signature, names from the subjects; re-exporting an
# unchanged tree changes nothing.  The new series is written aside and
# swapped in whole, so a failed export leaves patches/ as it was.
# QXL_SERIES=spice (make spice-export) does the same for build/spice-tree
# and spice/patches/.
#
#   export.sh [--check] [TREE]
#   --check: only compare; exit 1 if TREE's series differs from patches/.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

check=0
if [ "${1:-}" = --check ]; then check=1; shift; fi
series_select
tree=${1:-$series_tree}
patches=$series_patches
what=${series_make}export
[ -d "$tree/.git" ] || die "$what: no work tree at $tree; run 'make ${series_make}tree'"

out=$(mktemp -d "$top/build/export.XXXXXX")
trap 'rm -rf "$out"' EXIT
git -C "$tree" format-patch -q --zero-commit --no-signature --no-numbered \
    --subject-prefix=PATCH --no-renames --encoding=UTF-8 --abbrev=12 \
    -o "$out" base..HEAD ||
    die "$what: git format-patch failed"
{
    [ -z "$series_header" ] || echo "$series_header"
    (cd "$out" && ls -1 -- *.patch 2>/dev/null || true)
} >"$out/series"

# The QEMU series gets a cover letter (0000-cover-letter.patch, as
# `git format-patch --cover-letter` writes it, not in `series`): the
# subject and text of cover-letter.txt, the shortlog and diffstat of the
# series, dated like the last patch so that exporting stays deterministic.
if [ -n "$series_cover" ] && [ -f "$series_cover" ]; then
    n=$(grep -c -v '^#' "$out/series")
    git -C "$tree" format-patch -q --cover-letter --zero-commit --no-signature \
        --no-numbered --subject-prefix=PATCH --no-renames --encoding=UTF-8 \
        --abbrev=12 -o "$out/cover" base..HEAD ||
        die "$what: git format-patch --cover-letter failed"
    date=$(git -C "$tree" log -1 --format=%aD HEAD)
    python3 - "$out/cover/0000-cover-letter.patch" "$series_cover" "$n" "$date" \
        >"$out/0000-cover-letter.patch" <<'PY' ||
import sys
letter, cover, n, date = sys.argv[1:]
subject, _, body = open(cover).read().partition('\n\n')
text = open(letter).read()
text = text.replace('[PATCH] *** SUBJECT HERE ***',
                    f'[PATCH 00/{int(n):02d}] {subject.strip()}')
text = text.replace('*** BLURB HERE ***', body.rstrip('\n'))
out = []
for line in text.split('\n'):
    out.append(f'Date: {date}' if line.startswith('Date: ') and not out[5:] else line)
sys.stdout.write('\n'.join(out))
PY
        die "$what: writing the cover letter failed"
    rm -rf "$out/cover"
fi

if [ $check = 1 ]; then
    diff -r -q "$out" "$patches" >/dev/null
    exit $?
fi

if ! diff -r -q "$out" "$patches" >/dev/null 2>&1; then
    rm -rf "$patches.old"
    [ -d "$patches" ] && mv "$patches" "$patches.old"
    mkdir -p "$(dirname "$patches")"
    mv "$out" "$patches"
    rm -rf "$patches.old"
    step "$what: ${patches#"$top/"}/ updated ($(grep -c -v '^#' "$patches/series") patch(es))"
else
    step "$what: ${patches#"$top/"}/ already up to date"
fi
