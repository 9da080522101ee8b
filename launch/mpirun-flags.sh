# Sourced: sets MPIRUN_FLAGS, the extra flags Open MPI needs here: as root
# it refuses to start without --allow-run-as-root, and with more ranks than
# cores it needs --oversubscribe.
MPIRUN_FLAGS="--oversubscribe"
if [ "$(id -u)" -eq 0 ]; then
    MPIRUN_FLAGS="$MPIRUN_FLAGS --allow-run-as-root"
fi
