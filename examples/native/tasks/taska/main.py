"""Entry task: asks `taskb` to add two numbers, the Nuclio-native way.

It takes `{"value1": 3, "value2": 4}` (defaults 1 and 2) and calls `taskb` with
`context.platform.call_function`, which returns a `nuclio_sdk.Response`. When both tasks share a
function, fusionizer runs the call in-process; otherwise it goes through the fusionizer proxy.
"""

import nuclio_sdk


def handler(context, event):
    body = event.body if isinstance(event.body, dict) else {}
    numbers = {"value1": body.get("value1", 1), "value2": body.get("value2", 2)}
    response = context.platform.call_function(
        "taskb", nuclio_sdk.Event(body=numbers, method="POST", path="/")
    )
    if response.status_code != 200:
        return response.status_code, f"taskb failed: {response.body!r}"
    context.logger.info_with("taskb answered", result=response.body["result"])
    return response.body
