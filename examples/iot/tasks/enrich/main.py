"""Adds Fahrenheit to a validated reading and has `store` keep it (synchronously)."""

import nuclio_sdk


def handler(context, event):
    reading = dict(event.body)
    reading["fahrenheit"] = round(reading["celsius"] * 9 / 5 + 32, 2)
    stored = context.platform.call_function(
        "store", nuclio_sdk.Event(body=reading, method="POST")
    )
    if stored.status_code != 200:
        body = stored.body
        return stored.status_code, body.decode(errors="replace") if isinstance(body, bytes) else body
    reading["id"] = stored.body["id"]
    return reading
