#!/bin/sh
# Every key dltrain accepts is described in docs/job-file.md, so the
# reference cannot drift from the code.
. "$SRC/tests/lib.sh"
"$DLTRAIN" --keys >keys.out || fail "dltrain --keys"
n=0
for k in $(cut -d' ' -f1 keys.out); do
    n=$((n + 1))
    grep -qF "\`$k\`" "$SRC/docs/job-file.md" || fail "$k is not described in docs/job-file.md"
done
[ "$n" -ge 20 ] || fail "dltrain --keys listed only $n keys"
finish
