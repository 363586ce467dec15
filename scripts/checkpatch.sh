#!/bin/bash
# Run the base tree's scripts/checkpatch.pl over every patch of the series.
# Prints one TAP line per patch.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

n=0; rc=0
while read -r p; do
    case $p in ''|\#*) continue ;; esac
    n=$((n + 1))
    if out=$(cd "$top/build/base" &&
             ./scripts/checkpatch.pl --no-tree -q "$top/patches/$p" 2>&1); then
        echo "ok $n - checkpatch $p"
    else
        echo "$out" | sed 's/^/# /'
        echo "not ok $n - checkpatch $p"
        rc=1
    fi
done <"$top/patches/series"
echo "1..$n"
exit $rc
