"""The slow sink: compresses a reading for cold storage. Nobody waits for it (called with
`Prefer: respond-async`), so its 50 ms must not show in the entry request's latency unless it
is fused into the caller's function and run in line."""

import json
import time
import zlib


def handler(context, event):
    started = time.perf_counter()
    blob = zlib.compress(json.dumps(event.body).encode() * 200, 9)
    # Stands in for a write to cold storage.
    time.sleep(max(0.0, 0.05 - (time.perf_counter() - started)))
    return {"archived_bytes": len(blob)}
