#!/bin/bash
# Private apt configurations used by the project.  The system's own
# sources are never touched: each configuration has its own sources list,
# list directory and archive cache under build/apt/, and apt verifies every
# index against Debian's archive keyring as usual.
#
#   apt-private.sh NAME apt-get|apt-cache ARGS...
#
# NAME is one of:
#   trixie     deb-src + deb of Debian 13 (the QEMU base source, firmware data)
#   backports  Debian 12's bookworm-backports (meson >= 1.5, python3-pycotap)
#   sid        deb-src of unstable (the newest spice source, to apply the
#              spice-server series to)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
name=$1; shift
tool=$1; shift

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
dir=$top/build/apt/$name
mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/parts"

case $name in
trixie)
    cat >"$dir/sources.list" <<EOL
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie-updates main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie-updates main
EOL
    ;;
sid)
    cat >"$dir/sources.list" <<EOL
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror unstable main
EOL
    ;;
backports)
    . /etc/os-release
    cat >"$dir/sources.list" <<EOL
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror ${VERSION_CODENAME} main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror ${VERSION_CODENAME}-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror ${VERSION_CODENAME}-backports main
EOL
    ;;
*)
    echo "apt-private.sh: unknown configuration '$name'" >&2
    exit 2
    ;;
esac

exec "$tool" \
    -o Dir::Etc::SourceList="$dir/sources.list" \
    -o Dir::Etc::SourceParts="$dir/parts" \
    -o Dir::State::Lists="$dir/lists" \
    -o Dir::Cache::Archives="$dir/archives" \
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
    -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root \
    "$@"
