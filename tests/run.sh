#!/usr/bin/env bash
# Installs what dltrain needs (Debian packages), builds with warnings as
# errors, and runs the whole CTest suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

launch/install-deps.sh --tests
cmake -S . -B build -DDLTRAIN_WERROR=ON
cmake --build build -j"$(nproc)"
cd build
ctest --output-on-failure "$@"
