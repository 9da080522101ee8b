#!/usr/bin/env bash
# Installs the Debian packages dltrain needs to build and run (and, with
# --tests, to run the test suite). Packages already installed are not fetched
# again, so a machine that has them needs no network. Run as root (or with
# sudo available).
set -euo pipefail

packages=(
    gcc make cmake pkg-config          # build
    libopenmpi-dev openmpi-bin         # MPI: process launch and all-reduce on CPU
    libhdf5-dev hdf5-tools             # HDF5 datasets (h5dump, h5copy for tests)
    libopenblas-dev                    # BLAS (cblas sgemm)
    libinih-dev                        # job-file parsing
    zlib1g-dev                         # gzip-compressed IDX files
    dataset-fashion-mnist              # the built-in default data
)

# The test suite also compares against PyTorch (Debian's CPU build), plots
# the scaling report with gnuplot (gnuplot-nox: 4 packages, against about 40
# for python3-matplotlib), and submits jobs to a one-node Slurm cluster that
# it starts (as root).
if [ "${1:-}" = "--tests" ]; then
    packages+=(python3-torch python3-numpy python3-h5py gnuplot-nox)
    packages+=(slurm-wlm munge)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages already installed"
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
        echo "install-deps: need root to install: ${missing[*]}" >&2
        exit 1
    }
    sudo=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
