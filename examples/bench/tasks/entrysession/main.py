"""Entry task of the fusion benchmark, in the original nuclio_fusionizer's style.

`{"k": K}` -> K synchronous `requests_session.post(".../leaf", json=...)` calls; the answer
carries each call's duration in nanoseconds, timed inside the handler.
"""

import time


def handler(context, event, requests_session):
    k = int(event.body.get("k", 1)) if isinstance(event.body, dict) else 1
    address = event.headers["Fusionizer-Server-Address"]
    port = event.headers.get("Fusionizer-Server-Port", "8000")
    url = f"http://{address}:{port}/leaf"
    clock = time.perf_counter_ns
    call_ns = []
    for i in range(k):
        start = clock()
        response = requests_session.post(url, json={"x": i, "y": 1})
        call_ns.append(clock() - start)
        if response.status_code != 200 or response.json() != {"sum": i + 1}:
            return 502, f"leaf answered {response.status_code}: {response.text!r}"
    return {"k": k, "call_ns": call_ns}
