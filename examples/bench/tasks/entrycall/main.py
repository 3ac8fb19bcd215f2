"""Entry task of the fusion benchmark, Nuclio-native style.

`{"k": K}` -> K synchronous `context.platform.call_function("leaf", ...)` calls; the answer
carries each call's duration in nanoseconds, timed inside the handler, so the benchmark can
separate the per-call cost from the end-to-end latency.
"""

import time

import nuclio_sdk


def handler(context, event):
    k = int(event.body.get("k", 1)) if isinstance(event.body, dict) else 1
    clock = time.perf_counter_ns
    call_ns = []
    for i in range(k):
        start = clock()
        response = context.platform.call_function("leaf", nuclio_sdk.Event(body={"x": i, "y": 1}, method="POST"))
        call_ns.append(clock() - start)
        if response.status_code != 200 or response.body != {"sum": i + 1}:
            return 502, f"leaf answered {response.status_code}: {response.body!r}"
    return {"k": k, "call_ns": call_ns}
