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

# Where spice-build.sh installs the patched spice-server (libspice-server)
# that the patched QEMU links.
spice_prefix=$top/build/spice

# The project's two patch series, chosen by QXL_SERIES for tree.sh and
# export.sh: qemu (the default; patches/ on build/base, work tree build/tree)
# and spice (spice/patches/ on build/spice-base, work tree build/spice-tree;
# spice-sid: the same series on build/spice-sid, in build/spice-sid-tree).
# Sets series_base, series_tree, series_patches, series_vfile (the base's
# version file), series_name, series_make (prefix of its make targets) and
# series_header (the first line of its series file; none for QEMU's).
series_select() {
    case ${QXL_SERIES:-qemu} in
    qemu)
        series_base=$top/build/base series_tree=$top/build/tree
        series_patches=$top/patches series_vfile=.qxl-base-version
        series_name=QEMU series_make='' series_header=''
        series_cover=$top/cover-letter.txt
        ;;
    spice|spice-sid)
        series_base=$top/build/spice-base series_tree=$top/build/spice-tree
        series_patches=$top/spice/patches series_vfile=.spice-base-version
        series_name=spice series_make=spice- series_cover=''
        series_header="# spice-server series on Debian's spice source (written by make spice-export)"
        if [ "$QXL_SERIES" = spice-sid ]; then
            # the same series on the newest spice (spice-base.sh --sid)
            series_base=$top/build/spice-sid series_tree=$top/build/spice-sid-tree
        fi
        ;;
    *) die "QXL_SERIES is '$QXL_SERIES'; qemu, spice or spice-sid" ;;
    esac
}
