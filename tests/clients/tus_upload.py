"""Upload a file to Lectern with tuspy, the tus project's Python client, unchanged.

    tus_upload.py ENDPOINT TOKEN FILE LECTURE_ID CHUNK_BYTES [--stop-after N] [--url UPLOAD_URL]

Creates an upload (or resumes UPLOAD_URL), sends CHUNK_BYTES per PATCH and prints one JSON
line: {"url": ..., "offset": ..., "video_id": ...}. With --stop-after N it stops after N chunks,
as a client whose connection died would.
"""
import json
import sys

from tusclient import client

args = sys.argv[1:]
endpoint, token, path, lecture_id, chunk = args[:5]
stop_after = int(args[args.index("--stop-after") + 1]) if "--stop-after" in args else None
url = args[args.index("--url") + 1] if "--url" in args else None

tus = client.TusClient(endpoint, headers={"Authorization": f"Bearer {token}"})
uploader = tus.uploader(
    path,
    url=url,
    chunk_size=int(chunk),
    metadata={"lecture_id": lecture_id, "filename": path.rsplit("/", 1)[-1]},
)
sent = 0
while uploader.offset < uploader.get_file_size():
    if stop_after is not None and sent >= stop_after:
        break
    uploader.upload_chunk()
    sent += 1

video_id = None
request = getattr(uploader, "request", None)
headers = getattr(request, "response_headers", None) or {}
for key, value in headers.items():
    if key.lower() == "lectern-video-id":
        video_id = int(value)
print(json.dumps({"url": uploader.url, "offset": uploader.offset, "video_id": video_id}))
