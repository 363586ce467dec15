# Common helpers, sourced by the project's scripts.
top=${top:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export PATH=/usr/lib/ccache:$PATH:/usr/sbin:/sbin
# The system python, so that configure's venv sees Debian's meson.
PYTHON=/usr/bin/python3

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# Every build directory is SRC/build, and ccache sees paths relative to
# build/: the base, the work tree and the bisect tree then share one cache.
export CCACHE_BASEDIR=$top/build
export CCACHE_NOHASHDIR=true
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-include_file_mtime,include_file_ctime,time_macros}
