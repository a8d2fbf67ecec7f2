#!/bin/sh
# Builds build/dpr-kv-hiredis: dpr-kv with the hiredis-reader request parser
# (bench/kv_resp_hiredis.c) instead of src/kv_resp.c, for the comparison in
# docs/dpr-kv.md. Run from the repository root after `make build/libdpr.a`
# (which carries the base layer, common/, too).
set -eu
BUILD=${BUILD:-build}
srcs=$(ls cachestore/src/*.c | grep -v '/kv_resp.c$')
cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wno-unused-parameter -Icommon/include \
    -Ilibdpr/include -Icachestore/src \
    -o "$BUILD/dpr-kv-hiredis" $srcs cachestore/bench/kv_resp_hiredis.c "$BUILD/libdpr.a" \
    -luv -lhiredis -lz -lm -lpthread -lsystemd
echo "built $BUILD/dpr-kv-hiredis"
