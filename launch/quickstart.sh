#!/usr/bin/env bash
# dltrain quick start: installs what is needed (Debian packages), builds,
# converts Fashion-MNIST from Debian's dataset-fashion-mnist package to HDF5
# and trains the MLP of docs/examples/fashion-mlp.ini on 2 MPI ranks.
# Extra arguments are passed to dltrain as overrides (e.g. train.epochs=5).
set -euo pipefail
cd "$(dirname "$0")/.."

launch/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "quickstart: built build/bin/dltrain and build/bin/dltrain-data"

src=/usr/share/datasets/fashion-mnist
mkdir -p data
[ -f data/fashion-train.h5 ] ||
    build/bin/dltrain-data idx $src/train-images-idx3-ubyte.gz $src/train-labels-idx1-ubyte.gz \
        data/fashion-train.h5
[ -f data/fashion-test.h5 ] ||
    build/bin/dltrain-data idx $src/t10k-images-idx3-ubyte.gz $src/t10k-labels-idx1-ubyte.gz \
        data/fashion-test.h5

. launch/mpirun-flags.sh
progress=lines
[ -t 1 ] && progress=bar
set -x
mpirun -np 2 $MPIRUN_FLAGS build/bin/dltrain docs/examples/fashion-mlp.ini \
    train.progress=$progress "$@"
