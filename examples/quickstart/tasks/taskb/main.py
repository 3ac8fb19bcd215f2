"""Adds two numbers: `{"value1": 3, "value2": 4}` -> `{"result": 7}`."""


def handler(context, event):
    body = event.body
    if not isinstance(body, dict) or not {"value1", "value2"} <= body.keys():
        return 400, "send a JSON object with `value1` and `value2`"
    return {"result": body["value1"] + body["value2"]}
