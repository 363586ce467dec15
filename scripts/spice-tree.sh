#!/bin/bash
# Create the git work tree build/spice-tree: spice-server as Debian trixie
# ships it (build/spice-base) plus `git am` of every patch named in
# spice/patches/series.  Like tree.sh, it keeps a tree that holds
# uncommitted or unexported work unless FORCE=1, and keeps the old tree's
# build directory.
#
#   spice-tree.sh [DIR]       (default build/spice-tree)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
QXL_SERIES=spice exec "$top/scripts/tree.sh" "$@"
