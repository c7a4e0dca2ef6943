#!/usr/bin/env bash
# Build the images of deploy/compose.yaml with podman, needing Debian's mirrors, crates.io and
# static.rust-lang.org but no image registry:
#
#   deploy/container-build.sh [IMAGE…]     IMAGE: lectern, s3s-fs, postgres, lb (default: all)
#
# 1. The base, localhost/debian-bookworm: a minimal Debian bookworm made with debootstrap (run
#    as root), with bookworm-updates and bookworm-security applied, imported with
#    `podman import`. Made once; BASE=docker.io/library/debian:bookworm-slim (or any bookworm
#    image) skips it.
# 2. On that base: lectern (deploy/Containerfile), lectern-s3s-fs (its s3s-fs target),
#    lectern-postgres and lectern-lb (deploy/compose/). Podman's layer cache and the cargo
#    cache mounts make the next run cheap.
#
# Environment: BASE; EXTRA_CA_CERTS, a PEM file of CAs the build's HTTPS downloads must trust
# (a TLS-intercepting proxy's; default: those in /usr/local/share/ca-certificates; the runtime
# image does not keep them); CARGO_BUILD_JOBS (default:
# one per CPU); NICE (default 19: the build yields to everything else on the machine);
# DEBIAN_MIRROR (default http://deb.debian.org/debian); PODMAN_RUNTIME, the OCI runtime
# (default: podman's own, or runc where that cannot start a container: deploy/podman-env.sh).
set -euo pipefail

cd "$(dirname "$0")/.."

NICE="${NICE:-19}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LOCAL_BASE=localhost/debian-bookworm:latest

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

make_base() {
    if podman image exists "$LOCAL_BASE"; then
        return
    fi
    command -v debootstrap >/dev/null || {
        echo "debootstrap is missing: apt-get install debootstrap (or set BASE to a bookworm image)" >&2
        exit 1
    }
    root="$(mktemp -d /var/tmp/debian-bookworm.XXXXXX)"
    trap 'rm -rf "$root"' EXIT
    log "debootstrap bookworm into $root"
    nice -n "$NICE" debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >/dev/null
    cat >"$root/etc/apt/sources.list" <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    chroot "$root" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get upgrade -y -qq >/dev/null
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
    log "importing it as $LOCAL_BASE"
    tar --numeric-owner -C "$root" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$LOCAL_BASE" >/dev/null
}

. deploy/podman-env.sh

# build TAG CONTAINERFILE [podman build args…], from the repository root.
build() {
    local tag="$1" file="$2"
    shift 2
    local args=(--format docker --build-arg "BASE=$BASE" -f "$file" -t "$tag")
    if [ -n "$EXTRA_CA_CERTS" ]; then
        args+=(--secret "id=extra-ca,src=$EXTRA_CA_CERTS")
        args+=(--build-arg "EXTRA_CA_DIGEST=$(sha256sum <"$EXTRA_CA_CERTS" | cut -d' ' -f1)")
    fi
    if [ -n "${CARGO_BUILD_JOBS:-}" ]; then
        args+=(--build-arg "CARGO_BUILD_JOBS=$CARGO_BUILD_JOBS")
    fi
    log "building $tag"
    local start=$SECONDS
    nice -n "$NICE" podman build "${args[@]}" "$@" .
    log "$tag built in $((SECONDS - start)) s"
}

images=("$@")
if [ ${#images[@]} -eq 0 ]; then
    images=(lectern s3s-fs postgres lb)
fi

if [ -z "${BASE:-}" ]; then
    make_base
    BASE="$LOCAL_BASE"
fi
podman_ready "$BASE"

# Without EXTRA_CA_CERTS, the CAs this machine added to Debian's (/usr/local/share/ca-certificates,
# where a proxy's CA goes) are trusted by the build too: what works here works in the build.
if [ -z "${EXTRA_CA_CERTS:-}" ]; then
    EXTRA_CA_CERTS=""
    local_cas=(/usr/local/share/ca-certificates/*.crt)
    if [ -e "${local_cas[0]}" ]; then
        EXTRA_CA_CERTS="$(mktemp /tmp/lectern-extra-ca.XXXXXX.pem)"
        cat "${local_cas[@]}" >"$EXTRA_CA_CERTS"
        log "the build trusts this machine's added CAs: ${local_cas[*]}"
    fi
fi

for image in "${images[@]}"; do
    case "$image" in
        lectern) build localhost/lectern:latest deploy/Containerfile ;;
        s3s-fs) build localhost/lectern-s3s-fs:latest deploy/Containerfile --target s3s-fs ;;
        postgres) build localhost/lectern-postgres:latest deploy/compose/postgres.Containerfile ;;
        lb) build localhost/lectern-lb:latest deploy/compose/lb.Containerfile ;;
        *)
            sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
            exit 2
            ;;
    esac
done
