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
