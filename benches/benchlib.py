"""What the bench scripts share: ports, a JSON HTTP helper, waiting for a server, the binary."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_with_headers(method, url, body=None, token=None, headers=None):
    """`body` as JSON (dict or list) or raw bytes; returns the parsed JSON (or raw bytes) and the headers."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, method=method)
    if isinstance(body, (dict, list)):
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req) as r:
        raw = r.read()
        is_json = raw and r.headers.get("content-type", "").startswith("application/json")
        return (json.loads(raw) if is_json else raw), r.headers


def http(method, url, body=None, token=None, headers=None):
    return http_with_headers(method, url, body, token, headers)[0]


def wait_http(url, seconds=60):
    for _ in range(seconds * 10):
        try:
            urllib.request.urlopen(url)
            return
        except Exception:
            time.sleep(0.1)
    sys.exit(f"{url} did not come up")


def lectern_binary():
    """LECTERN_BIN when set (an already-built binary), else a fresh release build."""
    lectern = os.environ.get("LECTERN_BIN")
    if not lectern:
        subprocess.run(["cargo", "build", "--release", "--bin", "lectern", "-q"], cwd=ROOT, check=True)
        lectern = os.path.join(ROOT, "target", "release", "lectern")
    return lectern


def create_instructor(lectern, env):
    """The instructor the scripts log in as (see `login`), made with `lectern user create`."""
    subprocess.run([lectern, "user", "create", "--email", "bench@example.com", "--password", "bench-password",
                    "--role", "instructor"], env=env, check=True, capture_output=True)


def serve_with_instructor(lectern, env, api):
    """`lectern serve` on `env`'s settings, with the bench instructor, once it answers at `api`."""
    create_instructor(lectern, env)
    server = subprocess.Popen([lectern, "serve"], env=env, stdout=subprocess.DEVNULL)
    wait_http(f"{api}/healthz")
    return server


def login(api, email="bench@example.com", password="bench-password"):
    """An access token for the instructor the scripts create with `lectern user create`."""
    return http("POST", f"{api}/api/v1/auth/login", {"email": email, "password": password})["access_token"]


def course_with_lectures(api, tok, count=1, price=0, preview=False):
    """A course with one section of `count` lectures: the course and the lectures' ids."""
    course = http("POST", f"{api}/api/v1/courses", {"title": "Bench", "price": price}, tok)
    section = http("POST", f"{api}/api/v1/courses/{course['id']}/sections", {"title": "S"}, tok)
    lectures = [http("POST", f"{api}/api/v1/sections/{section['id']}/lectures",
                     {"title": f"L{i}", "is_preview": preview}, tok)["id"] for i in range(count)]
    return course, lectures


def transcoded_video(api, tok, lecture, work, seconds=60, wait=600):
    """A `seconds`-long 720p test video uploaded to `lecture` and transcoded: its id."""
    src = os.path.join(work, "src.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=30:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-c:a", "aac", "-shortest", src], check=True)
    with open(src, "rb") as f:
        video_id = http("PUT", f"{api}/api/v1/lectures/{lecture}/video", f.read(), tok)["video_id"]
    for _ in range(wait * 2):
        v = http("GET", f"{api}/api/v1/videos/{video_id}", token=tok)
        if v["status"] in ("ready", "failed"):
            break
        time.sleep(0.5)
    assert v["status"] == "ready", v
    return video_id
