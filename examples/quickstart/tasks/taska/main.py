"""Entry task of the quickstart, written like a task of the original nuclio_fusionizer.

It takes `{"value1": 3, "value2": 4}` (defaults 1 and 2) and asks `taskb` to add the numbers.
The request goes to the fusionizer proxy named in the `Fusionizer-Server-Address` header; when
`taska` and `taskb` are fused into one function, fusionizer answers it in-process instead, and
this code does not change.
"""


def handler(context, event, requests_session):
    body = event.body if isinstance(event.body, dict) else {}
    numbers = {"value1": body.get("value1", 1), "value2": body.get("value2", 2)}
    address = event.headers["Fusionizer-Server-Address"]
    # The original project hard-coded port 8000; fusionizer also sends the proxy's real port.
    port = event.headers.get("Fusionizer-Server-Port", "8000")
    response = requests_session.post(f"http://{address}:{port}/taskb", json=numbers)
    if response.status_code != 200:
        return response.status_code, f"taskb failed: {response.text}"
    context.logger.info_with("taskb answered", result=response.json()["result"])
    return response.json()
