#!/usr/bin/env bash
# Installs what dltrain needs (Debian packages), builds with warnings as
# errors, and runs the whole CTest suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

launch/install-deps.sh --tests
cmake -S . -B build -DDLTRAIN_WERROR=ON
cmake --build build -j"$(nproc)"
cd build
# As root, with the packages just installed, the Slurm tests must run: a
# Slurm that does not start is a failure here, not a skip.
if [ "$(id -u)" -eq 0 ]; then
    export DLTRAIN_REQUIRE_SLURM=1
fi
ctest --output-on-failure "$@"
