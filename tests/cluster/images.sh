#!/usr/bin/env bash
# Builds the project's images without a registry or a Docker engine, and loads them
# into the cluster's containerd (namespace k8s.io, so kubelet sees them).
#
#   images.sh base                  Debian base (mmdebstrap, cached tarball) imported
#                                   into buildah as debian:<suite>-slim
#   images.sh pause                 the pod sandbox image (static pause binary)
#   images.sh build DOCKERFILE TAG  `buildah build` of an ordinary Dockerfile, context =
#                                   repository root, as `docker build -f DOCKERFILE .`
#   images.sh load TAG...           export from buildah and import into containerd
#   images.sh all                   base, pause, the runner, controller and browser images, and the
#                                   cluster's own (Traefik, CoreDNS); then load them if
#                                   the cluster's containerd is running
#
# Pods use these with imagePullPolicy: Never. The same Dockerfiles build with Docker.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root

# buildah (and mmdebstrap) mount layers and leave some mounted when they exit; in a
# mount namespace of our own they all go away with it, and a tmpfs run root keeps
# buildah's record of mounts in step with that.
if [ -z "${IMAGES_PRIVATE_MOUNTS:-}" ]; then
    export IMAGES_PRIVATE_MOUNTS=1
    exec unshare --mount --propagation private "$0" "$@"
fi
mkdir -p "$CACHE_ROOT/buildah/run"
mount -t tmpfs -o mode=0700,size=64m tmpfs "$CACHE_ROOT/buildah/run"

PAUSE_IMAGE="localhost/sandbox-controller/pause:1"
# The names helm/local-values.yaml gives the chart (kind users build the same ones).
RUNNER_IMAGE="${RUNNER_IMAGE:-localhost/sandbox-runner:local}"
CONTROLLER_IMAGE="${CONTROLLER_IMAGE:-localhost/sandbox-controller:local}"
BROWSER_IMAGE="${BROWSER_IMAGE:-localhost/sandbox-browser:local}"
TRAEFIK_IMAGE="localhost/sandbox-controller/traefik:$TRAEFIK_VERSION"
COREDNS_IMAGE="localhost/sandbox-controller/coredns:$COREDNS_VERSION"
# buildah keeps its layers in the cache, so a warm rebuild reuses unchanged steps.
BUILDAH=(buildah --root "$CACHE_ROOT/buildah/root" --runroot "$CACHE_ROOT/buildah/run"
         --storage-driver overlay)
CTR=("$CONTAINERD_BIN/ctr" --address "$CONTAINERD_SOCK" -n k8s.io)

image_exists() { "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; }

base() {
    local tar="$BASE_DIR/rootfs.tar" name="docker.io/library/debian:$DEBIAN_SUITE-slim"
    if [ ! -f "$BASE_DIR/.complete" ]; then
        log "mmdebstrap $DEBIAN_SUITE (minbase, slim path excludes)"
        rm -rf "$BASE_DIR"; mkdir -p "$BASE_DIR"
        # minbase plus the documentation excludes that make debian:*-slim slim; with no
        # mirror argument mmdebstrap uses Debian's default mirror plus updates/security.
        mmdebstrap --variant=minbase --mode=root --quiet \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/info/*' \
            --customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
            "$DEBIAN_SUITE" "$BASE_DIR/rootfs.tmp.tar"
        mv "$BASE_DIR/rootfs.tmp.tar" "$tar"
        date -u +%FT%TZ > "$BASE_DIR/.complete"
    fi
    if image_exists "$name" && [ "$("${BUILDAH[@]}" inspect --type image \
            --format '{{index .ImageAnnotations "org.sandbox-controller.base"}}' "$name")" \
            = "$(cat "$BASE_DIR/.complete")" ]; then
        log "cached: $name"; return
    fi
    log "importing the base tarball into buildah as $name"
    local c; c=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" add "$c" "$tar" / >/dev/null
    "${BUILDAH[@]}" config --cmd /bin/bash \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --annotation "org.sandbox-controller.base=$(cat "$BASE_DIR/.complete")" "$c"
    "${BUILDAH[@]}" commit --quiet --rm "$c" "$name" >/dev/null
}

pause() {
    local c
    [ -f "$PAUSE_BIN/.complete" ] || "$CLUSTER_DIR/build.sh" pause
    if image_exists "$PAUSE_IMAGE"; then log "cached: $PAUSE_IMAGE"; return; fi
    c=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" copy "$c" "$PAUSE_BIN/pause" /pause >/dev/null
    "${BUILDAH[@]}" config --entrypoint '["/pause"]' --user 65535:65535 "$c"
    "${BUILDAH[@]}" commit --quiet --rm "$c" "$PAUSE_IMAGE" >/dev/null
}

# binary_image TAG DIR BINARY: the Debian base with one binary of the build cache as its
# entry point (the cluster's own components: nothing of the project's is in them).
binary_image() {
    local tag="$1" dir="$2" binary="$3" c
    [ -f "$dir/.complete" ] || die "$dir is not built (build.sh)"
    if image_exists "$tag" && [ "$("${BUILDAH[@]}" inspect --type image \
            --format '{{index .ImageAnnotations "org.sandbox-controller.built"}}' "$tag")" \
            = "$(cat "$dir/.complete")" ]; then
        log "cached: $tag"; return
    fi
    log "building $tag from $dir/$binary"
    c=$("${BUILDAH[@]}" from --pull-never --quiet "docker.io/library/debian:$DEBIAN_SUITE-slim")
    "${BUILDAH[@]}" copy "$c" "$dir/$binary" "/usr/local/bin/$binary" >/dev/null
    "${BUILDAH[@]}" config --entrypoint "[\"/usr/local/bin/$binary\"]" --cmd '' --user 65532:65532 \
        --annotation "org.sandbox-controller.built=$(cat "$dir/.complete")" "$c"
    "${BUILDAH[@]}" commit --quiet --rm "$c" "$tag" >/dev/null
}

# This machine reaches package indexes through a TLS-intercepting egress proxy whose CA
# only the host trusts. RUN steps get the host's CA bundle and a pip config naming it as
# bind mounts, which exist only while a step runs, so the Dockerfile stays the ordinary
# one. buildah 1.28 leaves their empty mount points behind: drop_mount_points removes
# them in one last layer, so the image carries nothing of this machine.
build_mounts() {
    local bundle=/etc/ssl/certs/ca-certificates.crt conf="$CACHE_ROOT/buildah/pip.conf"
    [ -f "$bundle" ] || return 0
    mkdir -p "$(dirname "$conf")"
    printf '[global]\ncert = /etc/build-host-ca.crt\n' > "$conf"
    echo "--volume=$bundle:/etc/build-host-ca.crt:ro --volume=$conf:/etc/pip.conf:ro"
}

build() {
    local dockerfile="$1" tag="$2"
    log "buildah build -f $dockerfile -t $tag (context: $REPO_ROOT)"
    # chroot isolation: RUN steps need no OCI runtime and no user namespace of their own.
    # shellcheck disable=SC2046  # build_mounts prints separate options
    "${BUILDAH[@]}" build --quiet --pull=never --layers --isolation chroot $(build_mounts) \
        -f "$REPO_ROOT/$dockerfile" -t "$tag" "$REPO_ROOT" >/dev/null
    drop_mount_points "$tag"
}

drop_mount_points() {
    local c m f found=""
    c=$("${BUILDAH[@]}" from --pull-never --quiet "$1")
    m=$("${BUILDAH[@]}" mount "$c")
    for f in etc/build-host-ca.crt etc/pip.conf; do
        if [ -f "$m/$f" ] && [ ! -s "$m/$f" ]; then rm -f "$m/$f"; found=1; fi
    done
    "${BUILDAH[@]}" umount "$c" >/dev/null
    if [ -n "$found" ]; then
        "${BUILDAH[@]}" commit --quiet --rm "$c" "$1" >/dev/null
    else
        "${BUILDAH[@]}" rm "$c" >/dev/null
    fi
}

load() {
    local tag archive
    containerd_answers || die "containerd is not running (make cluster-up)"
    mkdir -p "$STATE_DIR/images"
    local id stamp
    for tag in "$@"; do
        archive="$STATE_DIR/images/$(echo "$tag" | tr '/:' '__').tar"
        stamp="${archive%.tar}.loaded"
        # An image this containerd already holds, as built, is not loaded again.
        id=$("${BUILDAH[@]}" inspect --type image --format '{{.FromImageID}}' "$tag")
        if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$id" ] \
                && "${CTR[@]}" images ls -q | grep -qxF -e "$tag" -e "docker.io/$tag"; then
            log "loaded already: $tag"; continue
        fi
        log "loading $tag into containerd"
        rm -f "$archive"
        "${BUILDAH[@]}" push --quiet "$tag" "docker-archive:$archive:$tag" >/dev/null
        "${CTR[@]}" images import --no-unpack=false "$archive" >/dev/null
        rm -f "$archive"
        echo "$id" > "$stamp"
    done
}

all() {
    base
    pause
    build runner-image/Dockerfile "$RUNNER_IMAGE"
    build controller/Dockerfile "$CONTROLLER_IMAGE"
    build browser-image/Dockerfile "$BROWSER_IMAGE"
    binary_image "$TRAEFIK_IMAGE" "$TRAEFIK_BIN" traefik
    binary_image "$COREDNS_IMAGE" "$COREDNS_BIN" coredns
    if containerd_answers; then
        load "$PAUSE_IMAGE" "$RUNNER_IMAGE" "$CONTROLLER_IMAGE" "$BROWSER_IMAGE" \
            "$TRAEFIK_IMAGE" "$COREDNS_IMAGE"
    fi
}

case "${1:-all}" in
    base) base ;;
    pause) pause ;;
    build) [ $# -eq 3 ] || die "usage: images.sh build DOCKERFILE TAG"; base; build "$2" "$3" ;;
    load) shift; load "$@" ;;
    all) all ;;
    *) die "unknown command: $1" ;;
esac
