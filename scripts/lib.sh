# Common helpers, sourced by the project's scripts.
top=${top:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export PATH=/usr/lib/ccache:$PATH:/usr/sbin:/sbin
# The system python, so that configure's venv sees Debian's meson.
PYTHON=/usr/bin/python3

step() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
