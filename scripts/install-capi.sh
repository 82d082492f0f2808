#!/usr/bin/env bash
# Install libagentmem (the C API) under PREFIX: lib/libagentmem.{so,a},
# include/agentmem.h and lib/pkgconfig/agentmem.pc.
#   scripts/install-capi.sh /usr/local      (after cargo build --release -p agentmem-capi)
set -euo pipefail
prefix=${1:?usage: install-capi.sh PREFIX}
root="$(cd "$(dirname "$0")/.." && pwd)"
target=${CARGO_TARGET_DIR:-$root/target}/release
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
for f in libagentmem.so libagentmem.a; do
    [[ -f $target/$f ]] || { echo "install-capi: $target/$f missing; run cargo build --release -p agentmem-capi first" >&2; exit 1; }
done
mkdir -p "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$target/libagentmem.so" "$prefix/lib/"
install -m 0644 "$target/libagentmem.a" "$prefix/lib/"
install -m 0644 "$root/crates/agentmem-capi/include/agentmem.h" "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" \
    "$root/crates/agentmem-capi/agentmem.pc.in" >"$prefix/lib/pkgconfig/agentmem.pc"
echo "installed libagentmem $version under $prefix"
