#!/usr/bin/env bash
# Bring up deploy/compose.yaml from the images deploy/container-build.sh made, play a lecture
# through it, and take it down again:
#
#   deploy/container-smoke.sh [--keep]
#
# What it does, as a newcomer would: fresh secrets in a scratch env file; `podman-compose up`
# (PostgreSQL, s3s-fs, two API nodes behind nginx, a transcoding worker); sign up, become an
# instructor, make a course with a lecture, upload a 12-second test video through the load
# balancer, wait until the worker has made it ready, then fetch the master playlist with a
# playback token and copy the whole stream with the ffmpeg CLI, checking what ffprobe reads.
# --keep leaves the stack running (and prints how to stop it).
#
# Needs: the images (deploy/container-build.sh), podman-compose (installed from PyPI when
# missing), ffmpeg and python3 on this machine.
set -euo pipefail

cd "$(dirname "$0")/.."
. deploy/podman-env.sh

keep=false
[ "${1:-}" = --keep ] && keep=true

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

for image in lectern lectern-s3s-fs lectern-postgres lectern-lb; do
    podman image exists "localhost/$image:latest" || {
        echo "localhost/$image:latest is missing: run deploy/container-build.sh first" >&2
        exit 1
    }
done
podman_ready localhost/lectern:latest
if ! command -v podman-compose >/dev/null; then
    log "installing podman-compose"
    python3 -m pip install --quiet podman-compose 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages podman-compose
fi

work="$(mktemp -d /tmp/lectern-smoke.XXXXXX)"
project="lectern-smoke-$$"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
secret() { python3 -c 'import secrets; print(secrets.token_hex(24))'; }
# The example file with every change-me replaced, as the guide asks.
sed -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$(secret)/" \
    -e "s/^LECTERN_S3_SECRET_KEY=.*/LECTERN_S3_SECRET_KEY=$(secret)/" \
    -e "s/^LECTERN_JWT_SECRET=.*/LECTERN_JWT_SECRET=$(secret)/" \
    -e "s/^LECTERN_PLAYBACK_KEYS=.*/LECTERN_PLAYBACK_KEYS=k1:$(secret)/" \
    deploy/env.example >"$work/env"
printf 'HTTP_PUBLISH=127.0.0.1:%s\nBASE_IMAGE=localhost/debian-bookworm:latest\n' "$port" >>"$work/env"
compose=(podman-compose --env-file "$work/env" -p "$project" -f deploy/compose.yaml)

down() {
    if $keep; then
        log "left running; stop with: ${compose[*]} down -v"
        return
    fi
    log "taking the stack down"
    "${compose[@]}" logs >"$work/compose.log" 2>&1 || true
    "${compose[@]}" down -v >/dev/null 2>&1 || true
    echo "container logs: $work/compose.log" >&2
}
trap down EXIT

log "starting the stack ($project) on 127.0.0.1:$port"
"${compose[@]}" up -d --no-build >"$work/up.log" 2>&1 || {
    cat "$work/up.log" >&2
    exit 1
}

base="http://127.0.0.1:$port"
log "waiting for $base/readyz"
for i in $(seq 1 120); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/readyz")" = 200 ]; then break; fi
    if [ "$i" = 120 ]; then
        echo "the stack did not become ready in 120 s" >&2
        podman ps -a --filter "label=io.podman.compose.project=$project" >&2
        exit 1
    fi
    sleep 1
done
podman ps --filter "label=io.podman.compose.project=$project" --format '{{.Names}}  {{.Status}}' >&2

log "making a 12-second test lecture"
ffmpeg -loglevel error -f lavfi -i testsrc2=duration=12:size=1280x720:rate=30 \
    -f lavfi -i sine=frequency=440:duration=12 -c:v libx264 -pix_fmt yuv420p -c:a aac \
    -shortest "$work/lecture.mp4"

log "upload through the load balancer, transcode on the worker, play"
python3 - "$base" "$work/lecture.mp4" "$work/copy.mp4" <<'PY'
import json, subprocess, sys, time, urllib.request, urllib.error

base, source, copy = sys.argv[1:]

def call(method, path, body=None, token=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method)
    if raw is not None:
        req.add_header("Content-Type", "application/octet-stream")
    elif body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            text = r.read()
            return json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}")

def login(email):
    return call("POST", "/api/v1/auth/login", {"email": email, "password": "correct horse battery"})["access_token"]

email = f"smoke-{int(time.time())}@example.com"
call("POST", "/api/v1/auth/signup", {"email": email, "password": "correct horse battery", "name": "Smoke Test"})
call("POST", "/api/v1/me/instructor", {"headline": "Tester", "bio": "Runs the container smoke test"}, login(email))
token = login(email)
course = call("POST", "/api/v1/courses", {"title": "Containers 101", "description": "Played from the compose stack",
                                         "price": 0, "currency": "KRW"}, token)
section = call("POST", f"/api/v1/courses/{course['id']}/sections", {"title": "Start"}, token)
lecture = call("POST", f"/api/v1/sections/{section['id']}/lectures", {"title": "Hello"}, token)
with open(source, "rb") as f:
    video = call("PUT", f"/api/v1/lectures/{lecture['id']}/video", token=token, raw=f.read())
print(f"uploaded: video {video['video_id']}, {video['status']}", file=sys.stderr)
started = time.time()
while True:
    v = call("GET", f"/api/v1/videos/{video['video_id']}", token=token)
    if v["status"] == "ready":
        break
    if v["status"] == "failed" or time.time() - started > 600:
        sys.exit(f"transcode did not finish: {v}")
    time.sleep(1)
rungs = ", ".join(f"{r['name']} {r['width']}x{r['height']}" for r in v["renditions"])
print(f"ready after {time.time() - started:.1f} s: {v['duration_seconds']} s, {rungs}", file=sys.stderr)
play = call("POST", f"/api/v1/lectures/{lecture['id']}/playback", {}, token)
subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", play["url"], "-c", "copy", copy], check=True)
probe = json.loads(subprocess.run(
    ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type,codec_name,width,height",
     "-of", "json", copy], check=True, capture_output=True).stdout)
duration = float(probe["format"]["duration"])
streams = ", ".join(s["codec_name"] + (f" {s['width']}x{s['height']}" if "width" in s else "") for s in probe["streams"])
print(f"played {play['url'].split('?')[0]}: {duration:.2f} s of {streams}", file=sys.stderr)
if abs(duration - 12) > 0.5 or {s["codec_type"] for s in probe["streams"]} != {"video", "audio"}:
    sys.exit("the copy is not the lecture")
PY
log "the container stack played the lecture"
