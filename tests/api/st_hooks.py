"""Schemathesis hooks for Lectern's API run (loaded through SCHEMATHESIS_HOOKS=st_hooks).

tus PATCH bodies are `application/offset+octet-stream`: raw bytes, like any octet stream.
"""
import schemathesis


@schemathesis.serializer("application/offset+octet-stream")
def tus_chunk(ctx, value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return str(value).encode()
