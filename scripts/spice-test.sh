#!/bin/bash
# spice-server's own test suite (meson test) on the build of the work tree,
# as TAP: one "ok N - NAME" or "not ok N - NAME # RESULT" line per test, so
# that check.sh counts each.  meson's own output follows as TAP comments.
# A test that skips itself counts as not ok: leave it out below instead,
# with the reason.
#
#   spice-test.sh [BUILDDIR]      (default build/spice-tree/build)
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

builddir=${1:-$top/build/spice-tree/build}
[ -f "$builddir/build.ninja" ] || die "spice-test: no build at $builddir; run 'make spice'"

# Tests not run here, as "project:name", each with the reason.  None: all 22
# tests of spice 0.15.2-1 pass on Debian 12 with spice-build.sh's options,
# and so does the series' own, test-display-frozen-client (23 with it).
exclude=()

tests=()
while IFS= read -r t; do
    t=${t/ \/ /:}
    for x in "${exclude[@]}"; do
        [ "$x" = "$t" ] && continue 2
    done
    tests+=("$t")
done < <(meson test -C "$builddir" --no-rebuild --list 2>/dev/null)
[ ${#tests[@]} -gt 0 ] || die "spice-test: meson lists no test in $builddir"

log=$builddir/meson-logs/testlog.json
rm -f "$log"
meson test -C "$builddir" --print-errorlogs "${tests[@]}" 2>&1 | sed 's/^/# /'
[ -f "$log" ] || die "spice-test: meson test wrote no $log"

echo "1..${#tests[@]}"
"$PYTHON" - "$log" <<'PY'
import json, sys
failed = 0
for n, line in enumerate(open(sys.argv[1]), 1):
    r = json.loads(line)
    if r["result"] in ("OK", "EXPECTEDFAIL"):
        print(f"ok {n} - {r['name']}")
    else:
        failed += 1
        print(f"not ok {n} - {r['name']} # {r['result']}")
sys.exit(1 if failed else 0)
PY
