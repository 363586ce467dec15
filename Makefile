# qxl-async: fetch the QEMU base, apply the series, build, test, benchmark.
#
#   make demo       build, then boot a Linux guest on -vga qxl (the main job)
#   make check      build and run every test; ends with "N passed, N failed"
#   make bench      patched vs. unpatched QEMU with a frozen SPICE client
#
# The spice-server series (spice/patches/, on Debian trixie's spice):
#   make spice-base / spice-tree / spice-export   as base / tree / export
#   make spice      build it and install libspice-server into build/spice,
#                   which build/patched links (make build does this first)
#
# See README.md for the rest.

SHELL := /bin/bash
S := scripts

PATCHED  := build/patched/qemu-system-x86_64
UPSTREAM := build/upstream/qemu-system-x86_64
# where make spice installs the patched libspice-server (lib.sh: spice_prefix)
SPICE    := $(CURDIR)/build/spice

.PHONY: all deps base tree export build upstream demo check check-long \
        check-asan fuzz fuzz-coverage asan bench docs checkpatch \
        bisect-check spice-base spice-tree spice-export spice clean distclean

all: build

deps:
	$(S)/deps.sh

base: deps
	$(S)/fetch-base.sh

# The work tree: base + git am of patches/series.
tree: base
	$(S)/tree.sh

export:
	$(S)/export.sh

build/tree/.git:
	$(MAKE) tree

# The patched QEMU links the patched libspice-server of build/spice.
build: base build/tree/.git spice
	QXL_SPICE_PREFIX=$(SPICE) $(S)/build.sh build/tree build/patched

upstream: base
	$(S)/build.sh build/base build/upstream

# The spice-server series: the same workflow on build/spice-tree.
spice-base: deps
	$(S)/spice-base.sh

spice-tree: spice-base
	$(S)/spice-tree.sh

spice-export:
	QXL_SERIES=spice $(S)/export.sh

build/spice-tree/.git:
	$(MAKE) spice-tree

spice: spice-base build/spice-tree/.git
	$(S)/spice-build.sh

demo: build
	$(S)/demo.sh

check: deps base spice-base
	$(S)/check.sh

check-long: deps base spice-base
	$(S)/check.sh --long

# The ASan+UBSan+libFuzzer build (build/asan) and what runs on it.
asan: base build/tree/.git
	$(S)/build-asan.sh

check-asan: deps base
	$(S)/check-asan.sh

# make fuzz [FUZZ_TIME=seconds] [FUZZ_TARGETS="qxl-vga qxl"] [FUZZ_JOBS=n]
# (FUZZ_JOBS: fuzzer processes per target, sharing its corpus; default:
# the CPUs divided among the targets)
FUZZ_TIME ?= 600
FUZZ_TARGETS ?= qxl-vga
FUZZ_JOBS ?=
fuzz: deps base
	FUZZ_JOBS="$(FUZZ_JOBS)" $(S)/fuzz.sh $(FUZZ_TIME) $(FUZZ_TARGETS)

fuzz-coverage: deps base
	$(S)/fuzz.sh --coverage $(FUZZ_TARGETS)

bench: build upstream
	bench/run.sh

docs: base build/tree/.git
	$(S)/docs.sh

checkpatch: base
	$(S)/checkpatch.sh

bisect-check: base
	$(S)/bisect-check.sh

clean:
	rm -rf build/patched build/upstream build/asan build/bisect build/bisect-build build/guest \
	       build/spice build/spice-sid-tree

distclean:
	rm -rf build
