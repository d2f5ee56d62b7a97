#!/usr/bin/env bash
# Builds evalr's container image (the Dockerfile) with buildah: no Docker daemon needed.
#
#   scripts/build-image.sh [--tag NAME]
#       The real multi-stage build, what `docker build .` and `az acr build` run: pulls
#       rust:1-bookworm and debian:bookworm-slim, compiles evalr in the builder stage.
#       Default tag evalr:<version>, in buildah's usual image store.
#
#   scripts/build-image.sh --binary PATH [--slim] [--tag NAME]
#       Offline, around an evalr binary built on this machine (Debian bookworm, the image's
#       release): builds the Dockerfile's runtime stages with the two files they copy from the
#       builder and model stages taken from this machine: the binary (stripped) and the
#       installed default model (${EVALR_MODEL_DIR:-~/.cache/evalr/models}; none with --slim,
#       which builds the runtime-slim stage). Needs no registry: the debian:bookworm-slim base
#       is made from Debian's own packages with debootstrap (the apt mirror must answer) and
#       cached, with the layers, in a private image store under
#       ${EVALR_CONTAINER_DIR:-~/.cache/evalr/container} (private, so the homemade base never
#       stands in for the real one elsewhere). The test suite builds its image this way
#       (tests/integration/container.rs). Default tag localhost/evalr:dev.
#
# Needs root (debootstrap, and buildah without user namespaces), else passwordless sudo.
# Prints `image: NAME`, `root: DIR` and `runroot: DIR` last: use them as
#   buildah --root DIR --runroot DIR ...   (e.g. `push NAME docker-archive:evalr.tar`).
# Environment: EVALR_CONTAINER_DIR (cache and image store), EVALR_DEBIAN_MIRROR (default
# http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
slim=0
tag=""
while [ $# -gt 0 ]; do
    case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --slim) slim=1; shift ;;
    --tag) tag="${2:?--tag needs a name}"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ "$(id -u)" != 0 ]; then
    # debootstrap and rootful buildah need root; sudo -n fails fast instead of prompting.
    sudo -n true 2>/dev/null || { echo "build-image: needs root or passwordless sudo" >&2; exit 2; }
    exec sudo -n --preserve-env=EVALR_CONTAINER_DIR,EVALR_DEBIAN_MIRROR,HOME "$0" "$@"
fi
command -v buildah >/dev/null || {
    echo "build-image: buildah is not installed (apt-get install buildah debootstrap)" >&2
    exit 2
}

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)

if [ -z "$binary" ]; then
    [ $slim = 1 ] && target=(--target runtime-slim) || target=()
    tag="${tag:-evalr:$version}"
    buildah bud --isolation chroot --layers --force-rm "${target[@]}" -t "$tag" .
    echo "image: $tag"
    echo "root: $(buildah info --format '{{.store.GraphRoot}}')"
    echo "runroot: $(buildah info --format '{{.store.RunRoot}}')"
    exit 0
fi

[ -f "$binary" ] || { echo "build-image: $binary is not a file" >&2; exit 2; }
# scripts/setup.sh builds llama.cpp for this machine's CPU (docs/cpu-build.md): an image around
# such a binary runs only on CPUs with the same instruction sets.
if [ -f .cargo/config.toml ] && grep -q '^GGML_' .cargo/config.toml; then
    echo "build-image: warning: .cargo/config.toml builds llama.cpp for this CPU, so $binary may" \
        "not run on other machines; for a portable image run scripts/setup.sh --portable and" \
        "rebuild (docs/cpu-build.md)" >&2
fi
tag="${tag:-localhost/evalr:dev}"
cache="${EVALR_CONTAINER_DIR:-$HOME/.cache/evalr/container}"
root="$cache/storage"
# Run state (locks, mount points) belongs on a filesystem that a reboot clears.
runroot="${TMPDIR:-/tmp}/evalr-container-run-$(id -u)"
mirror="${EVALR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$cache" "$runroot"
bah() { buildah --root "$root" --runroot "$runroot" "$@"; }

# One build at a time per cache: test runs of several worktrees share it, and the first one
# makes the base that the others then reuse.
exec 9>"$cache/lock"
flock 9

base=docker.io/library/debian:bookworm-slim
# Bumped when the recipe below changes, so caches made by an older one are made again.
recipe=2
base_tar="$cache/debian-bookworm-minbase-$recipe.tar"
if [ "$(bah inspect --type image --format '{{index .ImageAnnotations "evalr.base-recipe"}}' "$base" 2>/dev/null)" != "$recipe" ]; then
    if [ ! -f "$base_tar" ]; then
        command -v debootstrap >/dev/null || {
            echo "build-image: debootstrap is not installed (apt-get install debootstrap)" >&2
            exit 2
        }
        echo "build-image: making the Debian bookworm base with debootstrap (once; cached in $base_tar)" >&2
        rootfs="$cache/rootfs.partial"
        rm -rf "$rootfs"
        # Debian's keyring, named so that debootstrap also checks Debian's signatures on
        # other distributions (Ubuntu: the debian-archive-keyring package).
        keyring=/usr/share/keyrings/debian-archive-keyring.gpg
        [ -f "$keyring" ] || { echo "build-image: $keyring is missing (apt-get install debian-archive-keyring)" >&2; exit 2; }
        debootstrap --variant=minbase --keyring="$keyring" bookworm "$rootfs" "$mirror" >&2
        # What Debian's -slim images leave out (documentation, manual pages, translations),
        # also for packages installed later in the image.
        cat >"$rootfs/etc/dpkg/dpkg.cfg.d/evalr-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
        find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
        find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
        rm -rf "$rootfs"/usr/share/{man,info,groff,lintian,locale}/*
        # As in the official image: apt keeps no package caches (two 40 MB files after every
        # `apt-get update`) and no downloaded .deb files in the layers it writes.
        cat >"$rootfs/etc/apt/apt.conf.d/evalr-slim" <<'EOF'
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
EOF
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
            "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
        # The sources the official image has: the release, its updates and security fixes.
        rm -f "$rootfs/etc/apt/sources.list"
        cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        tar -C "$rootfs" --numeric-owner -cf "$base_tar.partial" .
        mv "$base_tar.partial" "$base_tar"
        rm -rf "$rootfs"
    fi
    c=$(bah from scratch)
    bah add "$c" "$base_tar" / >/dev/null
    bah config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --created-by "debootstrap --variant=minbase bookworm (scripts/build-image.sh)" \
        --annotation "evalr.base-recipe=$recipe" "$c"
    bah commit --quiet --rm "$c" "$base" >/dev/null
fi

# The Dockerfile's runtime-base stage as it is; --layers caches each step, so only a changed
# step (programs/, the Dockerfile) is built again.
bah bud --isolation chroot --layers --force-rm --pull=never --target runtime-base \
    -t localhost/evalr-runtime-base:cache . >&2

# Then the Dockerfile's own last stages (runtime-model + runtime, or runtime-slim), with the
# two files they copy from the builder and model stages taken from this machine instead: the
# binary given (stripped, as the builder strips it) and the installed default model.
[ $slim = 1 ] && stages=(runtime-slim) || stages=(runtime-model runtime)
context=$(mktemp -d "$cache/context.XXXXXX")
trap 'rm -rf "$context"' EXIT
awk -v want=" ${stages[*]} " '
    /^FROM / { keep = index(want, " " $NF " ") > 0 }
    keep && !/^#/' Dockerfile |
    sed -e 's#^FROM runtime-base AS#FROM localhost/evalr-runtime-base:cache AS#' \
        -e 's#^COPY --from=builder /usr/local/bin/evalr #COPY evalr #' \
        -e 's#^COPY --from=model /opt/models/\([^ ]*\) #COPY \1 #' >"$context/Containerfile"
if grep -q -- '--from=' "$context/Containerfile"; then
    echo "build-image: the Dockerfile's last stages copy from a stage this script does not replace:" >&2
    grep -- '--from=' "$context/Containerfile" >&2
    exit 1
fi
strip -o "$context/evalr" "$binary"
for file in $(sed -n 's#^COPY \([^ ]*\.gguf\) .*#\1#p' "$context/Containerfile"); do
    model="${EVALR_MODEL_DIR:-$HOME/.cache/evalr/models}/$file"
    [ -f "$model" ] || {
        echo "build-image: $model is missing: run scripts/install-default-model.sh (or build --slim)" >&2
        exit 2
    }
    ln -f "$model" "$context/$file" 2>/dev/null || cp "$model" "$context/$file"
done
old=$(bah inspect --type image --format '{{.FromImageID}}' "$tag" 2>/dev/null || true)
bah bud --isolation chroot --layers --force-rm --pull=never -f "$context/Containerfile" -t "$tag" "$context" >&2
# The image this tag named before is left untagged: remove it so the store does not grow.
if [ -n "$old" ] && [ "$old" != "$(bah inspect --type image --format '{{.FromImageID}}' "$tag")" ]; then
    bah rmi "$old" >/dev/null 2>&1 || true
fi
# A binary built on another release (newer glibc) fails here rather than in a job.
c=$(bah from --pull=never "$tag")
trap 'rm -rf "$context"; bah rm "$c" >/dev/null 2>&1 || true' EXIT
if ! bah run --isolation chroot "$c" -- /usr/local/bin/evalr --version >&2; then
    echo "build-image: $binary does not run in the image: build it on Debian bookworm" >&2
    exit 1
fi
echo "image: $tag"
echo "root: $root"
echo "runroot: $runroot"
