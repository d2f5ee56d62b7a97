#!/usr/bin/env bash
# Size of the container image (issue 17) and what it is made of, for BENCHMARKS.md.
# Builds the release binary (`cargo build --release`, what the Dockerfile's builder stage
# runs), then the default image and the runtime-slim one around it with
# scripts/build-image.sh --binary (offline, buildah), and measures:
#   - the image as stored (uncompressed) and as pushed (gzip-compressed layers, what a
#     registry holds and a node pulls);
#   - its parts: the Debian base, the packages added to it, the model, the binary, the programs.
# Prints a Markdown table to paste into BENCHMARKS.md. Needs what build-image.sh needs.
# Usage: scripts/bench-image.sh [--no-build] (reuse target/release/evalr as it is)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--no-build" ] || cargo build --release --quiet --locked --bin evalr
BIN=target/release/evalr
WORK=$(mktemp -d)

lines() { scripts/build-image.sh --binary "$BIN" "$@"; }
field() { sed -n "s/^$1: //p"; }
default=$(lines --tag localhost/evalr-bench:default)
slim=$(lines --slim --tag localhost/evalr-bench:slim)
root=$(field root <<<"$default")
runroot=$(field runroot <<<"$default")
bah() { buildah --root "$root" --runroot "$runroot" "$@"; }
names=(evalr-bench-default evalr-bench-slim evalr-bench-base evalr-bench-runtime-base)
remove_containers() { for c in "${names[@]}"; do bah rm "$c" >/dev/null 2>&1 || true; done; }
remove_containers
trap 'remove_containers; rm -rf "$WORK"' EXIT

# Bytes of the files under a mounted image (or of one path in it), hard links once.
bytes() { du -sbx "$1" | cut -f1; }
# A working container of the image, named (removed on exit), mounted: its root path.
mounted() {
    bah from --pull=never --name "$1" "$2" >/dev/null
    bah mount "$1"
}
# What a registry stores: the layers gzip-compressed, as `buildah push` writes them.
pushed() {
    rm -rf "$WORK/oci"
    bah push --quiet "$1" "oci:$WORK/oci:x" >/dev/null
    du -sb "$WORK/oci/blobs" | cut -f1
}

m_default=$(mounted evalr-bench-default localhost/evalr-bench:default)
m_slim=$(mounted evalr-bench-slim localhost/evalr-bench:slim)
m_base=$(mounted evalr-bench-base docker.io/library/debian:bookworm-slim)
m_runtime_base=$(mounted evalr-bench-runtime-base localhost/evalr-runtime-base:cache)

python3 - <<PY
def mb(n): return f"{int(n) / 1e6:.1f} MB" if int(n) >= 1e5 else f"{int(n) / 1e3:.0f} kB"
total, slim = $(bytes "$m_default"), $(bytes "$m_slim")
base, runtime_base = $(bytes "$m_base"), $(bytes "$m_runtime_base")
model = $(bytes "$m_default/usr/share/evalr/models")
binary = $(bytes "$m_default/usr/local/bin/evalr")
programs = $(bytes "$m_default/usr/share/evalr/programs")
packages = runtime_base - base - programs
pushed_default, pushed_slim = $(pushed localhost/evalr-bench:default), $(pushed localhost/evalr-bench:slim)
print("| image | files | pushed (gzip layers) |")
print("|---|---|---|")
print(f"| default (\`runtime\`: binary + embedded model) | {mb(total)} | {mb(pushed_default)} |")
print(f"| \`runtime-slim\` (remote models only) | {mb(slim)} | {mb(pushed_slim)} |")
print()
print("| part of the default image | size | share |")
print("|---|---|---|")
for name, n in [
    ("the default model (Gemma 3 270M, GGUF Q4_K_M)", model),
    ("Debian bookworm base (debootstrap minbase, slimmed)", base),
    ("the evalr binary (release, stripped)", binary),
    ("CA certificates, libgomp and the user (apt)", packages),
    ("programs", programs),
]:
    print(f"| {name} | {mb(n)} | {100 * n / total:.1f}% |")
PY
