# Sourced by deploy/container-build.sh and deploy/container-smoke.sh.
#
# Some sandboxes (this project's CI machine among them) refuse podman's default OCI runtime,
# crun: it cannot apply podman's default rlimits, which are above the sandbox's hard limits, or
# its cgroups. runc with the limits this shell has (or lower) starts containers there. When a
# probe container fails to start, podman_ready writes a containers.conf saying so and exports
# CONTAINERS_CONF, which podman, podman build and podman-compose all read; elsewhere nothing
# changes. PODMAN_RUNTIME names a runtime outright.

_limit() {
    local v
    v="$(ulimit "$1")"
    if [ "$v" = unlimited ]; then echo -1; else echo "$v"; fi
}

# podman_ready IMAGE: make sure podman can run IMAGE, choosing the runtime as above.
podman_ready() {
    local image="$1"
    if [ -z "${PODMAN_RUNTIME:-}" ] && podman run --rm --entrypoint true "$image" >/dev/null 2>&1; then
        return
    fi
    # The shell's own limits first; where runc may not set even those (seen: process limits
    # above 32768 refused), smaller process limits until one starts.
    local conf nproc
    conf="$(mktemp /tmp/lectern-containers.XXXXXX.conf)"
    export CONTAINERS_CONF="$conf"
    for nproc in "$(_limit -Hu)" 32768 4096 1024; do
        cat >"$conf" <<CONF
[containers]
default_ulimits = ["nofile=$(_limit -Hn):$(_limit -Hn)", "nproc=$nproc:$nproc"]

[engine]
runtime = "${PODMAN_RUNTIME:-runc}"
CONF
        if podman run --rm --entrypoint true "$image" >/dev/null 2>&1; then
            printf '\033[1m==> %s\033[0m\n' "podman: runtime ${PODMAN_RUNTIME:-runc}, nproc $nproc ($conf)" >&2
            return
        fi
    done
    echo "podman cannot start a container here; the last attempt said:" >&2
    podman run --rm --entrypoint true "$image"
}
