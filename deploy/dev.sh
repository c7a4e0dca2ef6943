#!/usr/bin/env bash
# Lectern's two everyday commands, for a Debian machine (fresh or not):
#
#   deploy/dev.sh serve [ARGS…]   build and run `lectern serve` (embedded defaults: ./data)
#   deploy/dev.sh test  [ARGS…]   run the whole test suite (SQLite, PostgreSQL, fs, S3, FFmpeg)
#   deploy/dev.sh unit            the fast tier: unit tests of pure functions, no services needed
#   deploy/dev.sh check           rustfmt --check and clippy -D warnings (CI runs it first)
#
# Each installs what it needs when it is missing: FFmpeg's libraries and clang for the build,
# and for the tests PostgreSQL, the S3 test server (s3s-fs) and the ffmpeg CLI. Packages come
# from Debian (apt-get, as root or through sudo) and crates.io.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

BUILD_PACKAGES=(pkg-config clang libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
    libswresample-dev libavfilter-dev libavdevice-dev)
TEST_PACKAGES=(ffmpeg postgresql procps python3 python3-pip chromium nginx-light)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_ensure() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

need_cargo() {
    if ! command -v cargo >/dev/null; then
        echo "Rust is not installed: get it from https://rustup.rs (stable, 1.85 or newer), then run this again." >&2
        exit 1
    fi
}

ensure_s3s_fs() {
    if ! command -v s3s-fs >/dev/null; then
        log "installing the S3 test server (s3s-fs)"
        cargo install s3s-fs@0.14.1 --features binary --locked --quiet
    fi
}

# Real clients the tests drive: tuspy (the tus project's Python client), standardwebhooks,
# schemathesis, and from npm hls.js,
# react-player and tus-js-client with playwright-core driving Debian's Chromium.
ensure_test_clients() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        apt_ensure nodejs npm
    fi
    if [ ! -d tests/browser/node_modules ]; then
        log "installing the browser test clients (npm)"
        npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
    fi
    pip_ensure 'import tusclient' tuspy
    # The Standard Webhooks reference verifier, which checks Lectern's webhook signatures.
    pip_ensure 'import standardwebhooks' standardwebhooks
    # schemathesis, which checks the OpenAPI document against the server (tests/openapi.rs);
    # pinned, so a new release's new checks arrive as a deliberate change.
    pip_ensure 'import schemathesis, sys; sys.exit(schemathesis.__version__ != "4.32.5")' schemathesis==4.32.5
}

# Install the PyPI package `$2` unless the Python check `$1` passes.
pip_ensure() {
    if ! python3 -c "$1" 2>/dev/null; then
        log "installing $2"
        python3 -m pip install --quiet "$2" 2>/dev/null \
            || python3 -m pip install --quiet --break-system-packages "$2"
    fi
}

# Start PostgreSQL if it is installed but down, and find a URL the tests can create databases
# with: trust auth as `postgres` on 127.0.0.1 (CI) or a password we set for it.
ensure_postgres() {
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        log "starting PostgreSQL"
        local version
        version=$(ls /etc/postgresql | sort -V | tail -1)
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
            || $SUDO pg_ctlcluster "$version" main start
        for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    fi
    if [ -z "${LECTERN_TEST_POSTGRES_URL:-}" ]; then
        if psql -w -h 127.0.0.1 -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; then
            export LECTERN_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432"
        else
            log "giving the postgres role a password for the tests"
            $SUDO -u postgres psql -q -c "ALTER USER postgres PASSWORD 'lectern-test'" >/dev/null
            export LECTERN_TEST_POSTGRES_URL="postgres://postgres:lectern-test@127.0.0.1:5432"
        fi
    fi
}

cmd="${1:-}"
shift || true
case "$cmd" in
    serve)
        apt_ensure "${BUILD_PACKAGES[@]}"
        need_cargo
        cargo build --release --bin lectern
        exec ./target/release/lectern serve "$@"
        ;;
    test)
        apt_ensure "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
        need_cargo
        ensure_s3s_fs
        ensure_test_clients
        ensure_postgres
        if cargo nextest --version >/dev/null 2>&1; then
            cargo nextest run --workspace --no-fail-fast "$@"
            # nextest does not run doc tests (among them the compile-fail checks of the id types).
            if [ $# -eq 0 ]; then exec cargo test --workspace --doc; fi
        else
            exec cargo test --workspace --no-fail-fast "$@"
        fi
        ;;
    unit)
        apt_ensure "${BUILD_PACKAGES[@]}"
        need_cargo
        exec cargo test --workspace --lib "$@"
        ;;
    check)
        apt_ensure "${BUILD_PACKAGES[@]}"
        need_cargo
        cargo fmt --all --check
        exec cargo clippy --workspace --all-targets -- -D warnings
        ;;
    *)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
