#!/usr/bin/env bash
# Builds berth's release binaries into target/release/.
# berth-runtime and berth-shim run once per container: they are linked statically
# and non-PIE (no dynamic loader, no relocations, only the libc code they use) with
# the size-optimised `container` profile, which keeps each under 3 MB resident.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT_DIR"

triple=$(rustc -vV | sed -n 's/^host: //p')
triple_env=$(echo "$triple" | tr 'a-z-' 'A-Z_')

cargo build --release --workspace --bins --quiet --exclude berth-runtime --exclude berth-shim

# With --target, these flags reach only the target's artifacts, not build scripts
# or proc macros.
env "CARGO_TARGET_${triple_env}_RUSTFLAGS=-C target-feature=+crt-static -C relocation-model=static" \
    LIBSECCOMP_LINK_TYPE=static \
    LIBSECCOMP_LIB_PATH="$(pkg-config --variable=libdir libseccomp)" \
    cargo build --profile container --target "$triple" --quiet -p berth-runtime -p berth-shim
for b in berth-runtime berth-shim; do
    install -m 0755 "target/$triple/container/$b" "target/release/$b"
done
