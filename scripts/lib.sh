# lib.sh: helpers that scripts/demo and scripts/test share. Sourced, not run.
# shellcheck shell=bash
# Both build out of tree in build/ at the top of the source tree.

GPUQ_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GPUQ_BUILD=$GPUQ_TOP/build

say() { printf '==> %s\n' "$*"; }
die() { printf '%s: error: %s\n' "${0##*/}" "$*" >&2; exit 1; }

gpuq_install_deps() {
    say "checking build dependencies"
    bash "$GPUQ_TOP/scripts/install-deps"
}

# gpuq_build [--exact] [CONFIGURE-FLAG...]
# Regenerates configure when it is missing or older than its inputs, runs
# configure when build/Makefile is missing (with --exact: also when build/
# was configured by hand or with other flags), then builds with one job per
# CPU. The flags of the last configure run from here are kept in
# build/.configure-flags.
gpuq_build() {
    local exact=no want have stamp=$GPUQ_BUILD/.configure-flags
    if [ "${1:-}" = --exact ]; then
        exact=yes
        shift
    fi
    if [ ! -x "$GPUQ_TOP/configure" ] ||
        [ "$GPUQ_TOP/configure" -ot "$GPUQ_TOP/configure.ac" ] ||
        [ "$GPUQ_TOP/configure" -ot "$GPUQ_TOP/Makefile.am" ]; then
        say "generating configure (autogen.sh)"
        "$GPUQ_TOP/autogen.sh"
    fi
    want="$*"
    if [ -f "$GPUQ_BUILD/Makefile" ] && [ $exact = yes ]; then
        have=$(cat "$stamp" 2>/dev/null || echo "(by hand)")
        if [ "$want" != "$have" ]; then
            say "build/ was configured with flags [$have], not [$want]: configuring again"
            rm -f "$GPUQ_BUILD/Makefile"
        fi
    fi
    if [ ! -f "$GPUQ_BUILD/Makefile" ]; then
        say "configuring in build/: ../configure $want"
        mkdir -p "$GPUQ_BUILD"
        rm -f "$stamp"
        (cd "$GPUQ_BUILD" && ../configure "$@")
        printf '%s\n' "$want" >"$stamp"
    fi
    say "building: make -C build -j$(nproc)"
    make -C "$GPUQ_BUILD" -j"$(nproc)"
}
