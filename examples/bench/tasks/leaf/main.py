"""The callee of the fusion benchmark: `{"x": 2, "y": 3}` -> `{"sum": 5}`."""


def handler(context, event):
    body = event.body
    return {"sum": body["x"] + body["y"]}
