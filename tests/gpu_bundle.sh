#!/usr/bin/env bash
# Developer tool: packs a CUDA build of dltrain made on a development machine
# (Debian 12) into one folder that runs on the GPU machines, which have the
# NVIDIA driver, nvcc 13 with cuBLAS, CMake and PyTorch but no MPI, HDF5,
# OpenBLAS or inih and no package registry. The folder travels with the
# device tool (at most 64 MiB in all, repository included), so it is kept
# under 60 MiB and nothing in it needs unpacking.
#
#   tests/gpu_bundle.sh BUILD_DIR OUT_DIR [--train-samples N]
#   tests/gpu_bundle.sh --check OUT_DIR
#
# BUILD_DIR is a build configured with -DDLTRAIN_CUDA=ON. OUT_DIR must not
# exist, or be an earlier bundle (it is replaced). It gets:
#   bin/      dltrain, dltrain-data, test_gpu, test_nccl, bench_train, bench_allreduce:
#             small wrappers that put lib/ (and the CUDA libraries' folder,
#             found by env.sh) on LD_LIBRARY_PATH for that program alone and
#             run the real one from libexec/. The library path is not set for
#             the shell itself, because lib/ holds Debian's libstdc++, zlib,
#             OpenSSL and others, which must not replace the GPU machine's own
#             under python3 and torch (compare_torch_gpu.sh runs both).
#   libexec/  the programs (debug information stripped) and Open MPI's orted,
#             which a singleton MPI_Init (dltrain started without mpirun)
#             forks to run its PMIx server.
#   lib/      every shared library they need that is neither glibc nor the
#             CUDA driver or toolkit (libcuda, libcudart, libcublas*,
#             libnccl), found with ldd until nothing is missing, including
#             what the MPI components below need; lib/openmpi/ the Open MPI
#             4.1 components (MCA plugins) a singleton needs, leaving out
#             those for fabrics (UCX, OFI, PSM, verbs), OpenSHMEM and MPI-IO;
#             lib/pmix/ PMIx's components. OpenBLAS is relinked from Debian's
#             own static libopenblas.a with only the symbols the programs use
#             and the Prescott, Haswell and SkylakeX kernels (Zen uses
#             Haswell's, Cooperlake SkylakeX's, older CPUs Prescott's):
#             4.5 MB instead of 35 MB, the same code, and the same results
#             as the system library on the same kernels.
#   share/    Open MPI's and PMIx's help texts (its error messages).
#   data/     fashion-test.h5 (all 10,000 test images, from BUILD_DIR/tests/data
#             or converted from Debian's dataset-fashion-mnist) and
#             fashion-train-N.h5, the first N (default 15000) of the 60,000
#             training images: the whole set (47 MB) does not fit.
#   env.sh    to source from bash: puts bin/ on PATH, points Open MPI and PMIx
#             at the folder (OPAL_PREFIX, OPAL_*DIR, PMIX_*, component paths),
#             allows root, sets BENCH_TRAIN for compare_torch_gpu.sh and
#             DLTRAIN_BUNDLE to the folder; it finds libcublas.so.13 under
#             CUDA_HOME, /usr/local/cuda or nvcc's folder and says so if not.
#
# --check proves a bundle as far as a machine without a GPU can: every
# library of every program and component resolves into the bundle or to
# glibc/CUDA (ldd); then, as root in a private mount namespace where
# Debian's copies of the bundled libraries, Open MPI's and PMIx's folders,
# orted and mpirun are hidden, and with an empty environment (env -i) but
# for env.sh, dltrain trains the MLP for 40 steps on the CPU as a singleton
# (no mpirun), dltrain-data verifies the data, and test_gpu exits 77 (no
# GPU) or 0.
#
# The GPU session's one call, from the repository root, with the bundle made
# there as bundle/ (ignored by git) and named in the call's carry; one line,
# shown here over several; the run folders stay in /tmp because at most 8
# files come back from $OUT:
#
#   set -o pipefail; source bundle/env.sh && { test_gpu; test_nccl;
#   dltrain docs/examples/fashion-mlp.ini train.device=cuda train.epochs=3
#     train.progress=lines data.train=bundle/data/fashion-train-15000.h5
#     data.test=bundle/data/fashion-test.h5 train.run_dir=/tmp/mlp-cuda &&
#   cp /tmp/mlp-cuda/summary.json $OUT/mlp-cuda.json &&
#   dltrain docs/examples/fashion-cnn.ini train.device=cuda train.epochs=2
#     train.progress=lines data.train=bundle/data/fashion-train-15000.h5
#     data.test=bundle/data/fashion-test.h5 train.run_dir=/tmp/cnn-cuda &&
#   cp /tmp/cnn-cuda/summary.json $OUT/cnn-cuda.json &&
#   benchmarks/compare_torch_gpu.sh --rounds 3 &&
#   bench_train --device cuda --model cnn --batch 512 --layers &&
#   bench_train --device cuda --model mlp --batch 512 --layers; } 2>&1 | tee $OUT/gpu.log
#
# compare_torch_gpu.sh runs the bundle's bench_train (env.sh sets
# BENCH_TRAIN) and python3 from the PATH, the one with torch there; the last
# two lines show where a GPU step goes, layer by layer.
set -euo pipefail

die() {
    echo "gpu_bundle.sh: $*" >&2
    exit 2
}
usage() {
    echo "usage: tests/gpu_bundle.sh BUILD_DIR OUT_DIR [--train-samples N]" >&2
    echo "       tests/gpu_bundle.sh --check OUT_DIR" >&2
    exit 2
}

REPO=$(cd "$(dirname "$0")/.." && pwd)
PROGRAMS="dltrain dltrain-data test_gpu test_nccl bench_train bench_allreduce"
LIMIT_MIB=60
FASHION=/usr/share/datasets/fashion-mnist
OMPI_COMPONENTS=/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
PMIX_COMPONENTS=/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix
OMPI_HELP=/usr/share/openmpi
PMIX_HELP=/usr/lib/x86_64-linux-gnu/pmix2/share/pmix

# glibc (its libraries use each other's private symbols, so they come from
# the machine as a set), the CUDA driver and toolkit (from the GPU machine).
is_system_lib() {
    case "$1" in
    linux-vdso.so.* | ld-linux-x86-64.so.* | libc.so.* | libm.so.* | libmvec.so.* | \
        libpthread.so.* | libdl.so.* | librt.so.* | libresolv.so.* | libutil.so.* | \
        libanl.so.* | libnsl.so.* | libnss_*.so.* | libBrokenLocale.so.* | \
        libthread_db.so.* | libc_malloc_debug.so.*) return 0 ;;
    libcuda.so.* | libcudart.so.* | libcublas.so.* | libcublasLt.so.* | libnccl.so.*) return 0 ;;
    esac
    return 1
}

# Open MPI components left out: fabrics this machine type lacks (and whose
# libraries would not fit), OpenSHMEM, MPI-IO (dltrain reads through HDF5),
# monitoring.
skip_component() {
    case "$1" in
    *_ucx.so | *_ofi.so | mca_mtl_psm*.so | mca_btl_openib.so | mca_reachable_netlink.so) return 0 ;;
    mca_atomic_* | mca_memheap_* | mca_scoll_* | mca_spml_* | mca_sshmem_*) return 0 ;;
    mca_io_* | mca_fcoll_* | mca_fbtl_* | mca_fs_* | mca_sharedfp_*) return 0 ;;
    *monitoring*) return 0 ;;
    esac
    return 1
}

# Every ELF file of the bundle whose libraries must resolve.
bundle_elves() {
    local f
    for f in "$1"/libexec/* "$1"/lib/*.so* "$1"/lib/openmpi/*.so "$1"/lib/pmix/*.so; do
        [ -f "$f" ] && [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] && echo "$f"
    done
    return 0
}

# The ldd lines "name path" of file f with the bundle's lib/ first.
deps_of() {
    LD_LIBRARY_PATH="$2/lib" ldd "$1" 2>/dev/null |
        awk '/=>/ { print $1, ($3 == "not" ? "NOTFOUND" : $3) }'
}

# Copy into lib/ every library some bundle file needs that resolves outside
# the bundle, until none is left; a library found nowhere is an error.
close_libraries() {
    local out=$1 added=1 f name path
    while [ "$added" = 1 ]; do
        added=0
        while read -r f; do
            while read -r name path; do
                is_system_lib "$name" && continue
                case "$path" in "$out"/lib/*) continue ;; esac
                [ "$path" = NOTFOUND ] && die "$f needs $name, which is nowhere on this machine"
                cp -L "$path" "$out/lib/$name"
                chmod u+w "$out/lib/$name"
                added=1
            done < <(deps_of "$f" "$out")
        done < <(bundle_elves "$out")
    done
}

# A trimmed libopenblas.so.0 (see the header) in lib/, from the static
# archive beside the shared library the programs resolve to.
trimmed_openblas() {
    local out=$1 so=$2 dir archive syms cores c defs=() u=() map
    dir=$(dirname "$(readlink -f "$so")")
    archive=$dir/libopenblas.a
    [ -f "$archive" ] || die "no $archive beside $(readlink -f "$so") to relink OpenBLAS from"
    # the OpenBLAS symbols the programs import
    syms=$(for f in "$out"/libexec/*; do nm -D --undefined-only "$f" 2>/dev/null; done |
        awk '{ sub(/@.*/, "", $2); print $2 }' | sort -u |
        comm -12 - <(nm -D --defined-only "$so" | awk '{ print $3 }' | sort -u))
    [ -n "$syms" ] || die "the programs import nothing from $so"
    map=$(mktemp)
    { echo "{ global:"; for c in $syms; do echo "  $c;"; done; echo "local: *; };"; } >"$map"
    for c in $syms; do u+=("-Wl,-u,$c"); done
    cores=$(nm "$archive" 2>/dev/null | awk '$2 == "D" && $3 ~ /^gotoblas_[A-Z0-9_]+$/ { print $3 }' |
        sort -u)
    # Each CPU type's kernel table: Prescott's (SSE3, any current x86-64),
    # Haswell's (AVX2) and SkylakeX's (AVX-512) are kept; the others become
    # names for one of them, the one whose instructions they have. The
    # kept tables come before their aliases in OpenBLAS's list of names,
    # so openblas_get_corename names the kernels that run.
    for c in $cores; do
        case "$c" in
        gotoblas_PRESCOTT | gotoblas_HASWELL | gotoblas_SKYLAKEX) u+=("-Wl,-u,$c") ;;
        gotoblas_ZEN) defs+=("-Wl,--defsym=$c=gotoblas_HASWELL") ;;
        gotoblas_COOPERLAKE) defs+=("-Wl,--defsym=$c=gotoblas_SKYLAKEX") ;;
        *) defs+=("-Wl,--defsym=$c=gotoblas_PRESCOTT") ;;
        esac
    done
    ${CC:-cc} -shared -o "$out/lib/libopenblas.so.0" -Wl,-soname,libopenblas.so.0 \
        -Wl,--version-script="$map" -Wl,--no-undefined "${u[@]}" "${defs[@]}" "$archive" \
        -lpthread -lm ||
        die "relinking OpenBLAS from $archive failed"
    rm -f "$map"
    strip --strip-unneeded "$out/lib/libopenblas.so.0"
    echo "OpenBLAS: relinked from $archive, exporting $(tr '\n' ' ' <<<"$syms")" >&2
}

# IDX files of the first n training samples (header count patched), for
# dltrain-data idx.
be32() {
    printf '%b' "$(printf '\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) \
        $(($1 & 255)))"
}
train_subset() {
    local n=$1 img=$2 lbl=$3
    set +o pipefail # head ends the decompression early
    { printf '\x00\x00\x08\x03'; be32 "$n"; printf '\x00\x00\x00\x1c\x00\x00\x00\x1c'
      gzip -dc "$FASHION/train-images-idx3-ubyte.gz" | tail -c +17 | head -c $((n * 784)); } >"$img"
    { printf '\x00\x00\x08\x01'; be32 "$n"
      gzip -dc "$FASHION/train-labels-idx1-ubyte.gz" | tail -c +9 | head -c "$n"; } >"$lbl"
    set -o pipefail
    [ "$(wc -c <"$img")" -eq $((16 + n * 784)) ] && [ "$(wc -c <"$lbl")" -eq $((8 + n)) ] ||
        die "$FASHION has fewer than $n training samples"
}

# The newest glibc symbol version any bundle file asks for (the GPU machine
# must have at least that glibc).
glibc_needed() {
    local f
    bundle_elves "$1" | while read -r f; do objdump -T "$f" 2>/dev/null; done |
        grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1
}

write_env() {
    cat >"$1/env.sh" <<ENV
# Source from bash to use this dltrain bundle (tests/gpu_bundle.sh):
#   source bundle/env.sh
# Puts its bin/ on PATH and points Open MPI and PMIx at it, so dltrain runs
# as an MPI singleton (no mpirun) with no MPI installed. The wrappers in bin/
# set LD_LIBRARY_PATH for their program alone (DLTRAIN_BUNDLE_LIBS).
# The glibc it needs: its programs and libraries were built on Debian 12.
DLTRAIN_BUNDLE_GLIBC=$2
ENV
    cat >>"$1/env.sh" <<'ENV'
DLTRAIN_BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DLTRAIN_BUNDLE
b=$DLTRAIN_BUNDLE
export PATH="$b/bin:$PATH"
export BENCH_TRAIN="$b/bin/bench_train"
# Open MPI 4.1's install directories (its env installdirs component), the
# folder of its components and help texts, and PMIx's.
export OPAL_PREFIX="$b" OPAL_EXEC_PREFIX="$b" OPAL_BINDIR="$b/libexec" OPAL_SBINDIR="$b/libexec"
export OPAL_LIBEXECDIR="$b/libexec" OPAL_LIBDIR="$b/lib" OPAL_PKGLIBDIR="$b/lib/openmpi"
export OPAL_DATAROOTDIR="$b/share" OPAL_DATADIR="$b/share" OPAL_PKGDATADIR="$b/share/openmpi"
export OPAL_SYSCONFDIR="$b/etc" OPAL_INCLUDEDIR="$b/include" OPAL_PKGINCLUDEDIR="$b/include"
export OMPI_MCA_mca_base_component_path="$b/lib/openmpi"
export PMIX_PREFIX="$b" PMIX_EXEC_PREFIX="$b" PMIX_BINDIR="$b/libexec" PMIX_LIBDIR="$b/lib"
export PMIX_PKGLIBDIR="$b/lib/pmix" PMIX_DATAROOTDIR="$b/share" PMIX_DATADIR="$b/share"
export PMIX_PKGDATADIR="$b/share/pmix" PMIX_SYSCONFDIR="$b/etc"
export PMIX_MCA_mca_base_component_path="$b/lib/pmix"
# The GPU machines run everything as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# cuBLAS and the CUDA runtime 13 come from the machine's CUDA toolkit.
cuda_libs=
nvcc_dir=$(dirname "$(command -v nvcc 2>/dev/null || echo /nonexistent/nvcc)")
for d in ${CUDA_HOME:+"$CUDA_HOME/lib64" "$CUDA_HOME/lib"} /usr/local/cuda/lib64 /usr/local/cuda/lib \
    /usr/local/cuda/targets/x86_64-linux/lib "$nvcc_dir/../lib64" "$nvcc_dir/../lib" \
    "$nvcc_dir/../targets/x86_64-linux/lib"; do
    if [ -e "$d/libcublas.so.13" ] && [ -e "$d/libcudart.so.13" ]; then
        cuda_libs=$(cd "$d" && pwd)
        break
    fi
done
if [ -z "$cuda_libs" ] && ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.13 '; then
    echo "env.sh: no libcublas.so.13 and libcudart.so.13 under CUDA_HOME, /usr/local/cuda or" \
        "nvcc's folder, nor known to ldconfig: set CUDA_HOME to the CUDA 13 toolkit" >&2
fi
have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')
if [ -n "$have" ] &&
    [ "$(printf '%s\n' "$have" "$DLTRAIN_BUNDLE_GLIBC" | sort -V | head -1)" != "$DLTRAIN_BUNDLE_GLIBC" ]; then
    echo "env.sh: this machine has glibc $have; the bundle's programs need $DLTRAIN_BUNDLE_GLIBC or newer" >&2
fi
# NCCL's libnccl.so.2: the toolkit's folder, or the copy PyTorch's pip
# packages carry (nvidia-nccl-cu13).
if [ -n "$cuda_libs" ] && [ -e "$cuda_libs/libnccl.so.2" ]; then
    :
elif nccl_dir=$(python3 -c 'import os, nvidia.nccl as n; print(os.path.join(list(n.__path__)[0], "lib"))' 2>/dev/null) &&
    [ -e "$nccl_dir/libnccl.so.2" ]; then
    cuda_libs="$cuda_libs${cuda_libs:+:}$nccl_dir"
elif ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2 '; then
    echo "env.sh: no libnccl.so.2 beside cuBLAS, in python3's nvidia.nccl package or known to" \
        "ldconfig: dltrain needs it to start" >&2
fi
# The driver's libcuda.so.1, where containers mount it.
[ -d /usr/local/nvidia/lib64 ] && cuda_libs="$cuda_libs${cuda_libs:+:}/usr/local/nvidia/lib64"
export DLTRAIN_BUNDLE_LIBS="$b/lib${cuda_libs:+:$cuda_libs}"
unset b d nvcc_dir cuda_libs have nccl_dir
ENV
}

write_wrapper() {
    cat >"$1/bin/$2" <<WRAP
#!/usr/bin/env bash
# Runs libexec/$2 of this bundle with its libraries (tests/gpu_bundle.sh).
source "\$(dirname "\$(readlink -f "\${BASH_SOURCE[0]}")")/../env.sh"
export LD_LIBRARY_PATH="\$DLTRAIN_BUNDLE_LIBS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "\$DLTRAIN_BUNDLE/libexec/$2" "\$@"
WRAP
    chmod +x "$1/bin/$2"
}

# Every library of every bundle file resolves into the bundle, to glibc or
# to CUDA (missing CUDA libraries are the GPU machine's to provide).
check_ldd() {
    local out=$1 bad=0 f name path
    while read -r f; do
        while read -r name path; do
            case "$path" in "$out"/lib/*) continue ;; esac
            is_system_lib "$name" && continue
            echo "  $f: $name resolves to $path, outside the bundle" >&2
            bad=1
        done < <(deps_of "$f" "$out")
    done < <(bundle_elves "$out")
    [ "$bad" = 0 ] || die "libraries resolve outside the bundle (above)"
    echo "ldd: every library of $(bundle_elves "$out" | wc -l) files resolves into the bundle," \
        "to glibc or to CUDA"
}

check() {
    local out
    out=$(cd "$1" && pwd)
    [ -f "$out/env.sh" ] || die "$1 is not a bundle (no env.sh)"
    check_ldd "$out"
    [ "$(id -u)" = 0 ] && command -v unshare >/dev/null ||
        die "the run under hidden system libraries needs root and unshare"
    # Hide, in a private mount namespace, Debian's copies of what the bundle
    # carries, and Open MPI and PMIx themselves.
    local hide=() f
    for f in "$out"/lib/*.so*; do
        for d in /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu; do
            [ -e "$d/$(basename "$f")" ] && hide+=("$(readlink -f "$d/$(basename "$f")")")
        done
    done
    mapfile -t hide < <(printf '%s\n' "${hide[@]}" | sort -u)
    local dirs=()
    for d in /usr/lib/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/pmix2 /usr/share/openmpi \
        /etc/openmpi /usr/lib/x86_64-linux-gnu/hwloc; do
        [ -d "$d" ] && dirs+=("$d")
    done
    for f in /usr/bin/orted /usr/bin/orterun /usr/bin/mpirun /usr/bin/mpiexec; do
        [ -e "$f" ] && hide+=("$f")
    done
    local tmp
    tmp=$(mktemp -d)
    : >"$tmp/empty"
    mkdir "$tmp/emptydir" "$tmp/run"
    cat >"$tmp/inside.sh" <<'INSIDE'
set -u
tmp=$1 out=$2 repo=$3
shift 3
# files first: some are links into the folders hidden after them
n=0 dirs=()
while [ "$1" != -- ]; do dirs+=("$1"); shift; done
shift
for f in "$@"; do mount --bind "$tmp/empty" "$f" || exit 1; n=$((n + 1)); done
for d in "${dirs[@]}"; do mount --bind "$tmp/emptydir" "$d" || exit 1; n=$((n + 1)); done
echo "hidden: $n system files and folders (the bundled libraries' Debian copies, Open MPI, PMIx," \
    "hwloc plugins, orted, mpirun)"
# An empty environment but for the bundle's env.sh.
env -i HOME="$tmp/run" PATH=/usr/bin:/bin TMPDIR="$tmp/run" bash -c '
set -u
source "$1/env.sh"
cd "$2/run" || exit 1
echo "ldd of the real dltrain, with the wrapper'"'"'s library path:"
LD_LIBRARY_PATH=$DLTRAIN_BUNDLE_LIBS ldd "$1/libexec/dltrain" | grep -v -E "=> $1/lib/" | sed "s/^/  /"
dltrain-data verify "$1"/data/fashion-test.h5 >verify.log 2>&1 || { cat verify.log; exit 1; }
echo "dltrain-data verify: the test set verifies"
train=$(ls "$1"/data/fashion-train-*.h5)
dltrain "$3/docs/examples/fashion-mlp.ini" train.device=cpu train.max_steps=40 train.log_every=10 \
    train.eval_every=0 train.progress=lines data.train="$train" data.test="$1/data/fashion-test.h5" \
    train.run_dir=mlp >train.log 2>&1
rc=$?
cat train.log
[ $rc = 0 ] || { echo "dltrain (singleton, CPU) failed with status $rc"; exit 1; }
test_gpu
rc=$?
[ $rc = 77 ] || [ $rc = 0 ] || { echo "test_gpu exited $rc (77: skipped, or 0 on a GPU)"; exit 1; }
echo "test_gpu exited $rc"
' check "$out" "$tmp" "$repo"
INSIDE
    local rc=0
    unshare -m bash "$tmp/inside.sh" "$tmp" "$out" "$REPO" "${dirs[@]}" -- "${hide[@]}" || rc=$?
    rm -rf "$tmp"
    [ "$rc" = 0 ] || die "the bundle failed with the system's libraries hidden (above)"
    echo "check: passed"
}

build() {
    local build=$1 out=$2 n=$3 p f
    for p in $PROGRAMS; do
        [ -x "$build/bin/$p" ] || [ "$p" = bench_allreduce ] || die "$build/bin/$p is missing (build it)"
    done
    LD_LIBRARY_PATH='' ldd "$build/bin/test_gpu" | grep -q 'libcudart\.so' ||
        die "$build is not a CUDA build (test_gpu does not link libcudart): configure it with -DDLTRAIN_CUDA=ON"
    if [ -e "$out" ]; then
        [ -f "$out/env.sh" ] || die "$out exists and is not a bundle; give a new folder"
        rm -rf "$out"
    fi
    mkdir -p "$out"/{bin,libexec,lib/openmpi,lib/pmix,share/openmpi,share/pmix,etc,data}
    out=$(cd "$out" && pwd)
    # a bundle that failed (or does not fit) is removed, never left to carry
    partial=$out
    trap 'rm -rf "$partial"' EXIT

    for p in $PROGRAMS; do
        [ -x "$build/bin/$p" ] || continue
        cp "$build/bin/$p" "$out/libexec/$p"
        strip --strip-debug "$out/libexec/$p"
        write_wrapper "$out" "$p"
    done
    cp "$(command -v orted || echo /usr/bin/orted)" "$out/libexec/orted" ||
        die "no orted (Debian's openmpi-bin) to copy"

    local blas
    blas=$(ldd "$build/bin/dltrain" | awk '$1 == "libopenblas.so.0" { print $3 }')
    [ -n "$blas" ] || die "dltrain does not link libopenblas.so.0"
    trimmed_openblas "$out" "$blas"

    for f in "$OMPI_COMPONENTS"/*.so; do
        skip_component "$(basename "$f")" || cp "$f" "$out/lib/openmpi/"
    done
    cp "$PMIX_COMPONENTS"/*.so "$out/lib/pmix/"
    cp "$OMPI_HELP"/help-*.txt "$out/share/openmpi/"
    cp "$PMIX_HELP"/help-*.txt "$out/share/pmix/"
    close_libraries "$out"
    strip --strip-unneeded "$out"/lib/*.so* "$out"/lib/openmpi/*.so "$out"/lib/pmix/*.so 2>/dev/null || true
    write_env "$out" "$(glibc_needed "$out")"

    # data
    if [ -f "$build/tests/data/fashion-test.h5" ]; then
        cp "$build/tests/data/fashion-test.h5" "$out/data/"
    else
        "$build/bin/dltrain-data" idx "$FASHION/t10k-images-idx3-ubyte.gz" \
            "$FASHION/t10k-labels-idx1-ubyte.gz" "$out/data/fashion-test.h5" >/dev/null
    fi
    local tmp
    tmp=$(mktemp -d)
    train_subset "$n" "$tmp/img" "$tmp/lbl"
    "$build/bin/dltrain-data" idx "$tmp/img" "$tmp/lbl" "$out/data/fashion-train-$n.h5" >/dev/null
    rm -rf "$tmp"

    check_ldd "$out"
    local kib
    kib=$(du -sk "$out" | awk '{ print $1 }')
    echo "bundle: $out, $((kib / 1024)).$((kib % 1024 * 10 / 1024)) MiB (limit $LIMIT_MIB MiB)," \
        "needs glibc $(glibc_needed "$out") or newer:"
    du -sh "$out"/* | sed 's/^/  /'
    [ "$kib" -le $((LIMIT_MIB * 1024)) ] ||
        die "the bundle is over $LIMIT_MIB MiB (removed): give a smaller --train-samples"
    trap - EXIT
}

[ $# -ge 2 ] || usage
if [ "$1" = --check ]; then
    [ $# = 2 ] || usage
    check "$2"
    exit 0
fi
build_dir=$1 out_dir=$2 samples=15000
shift 2
while [ $# -gt 0 ]; do
    case "$1" in
    --train-samples) samples=$2; shift 2 ;;
    *) usage ;;
    esac
done
case "$samples" in '' | *[!0-9]*) die "--train-samples wants a number from 1 to 60000, not '$samples'" ;; esac
[ "$samples" -ge 1 ] && [ "$samples" -le 60000 ] ||
    die "--train-samples wants a number from 1 to 60000, not $samples"
[ -d "$build_dir" ] || die "no build folder $build_dir"
build "$(cd "$build_dir" && pwd)" "$out_dir" "$samples"
