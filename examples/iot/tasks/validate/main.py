"""Checks a reading: a non-empty `device` and a plausible `celsius`. Answers it normalised."""


def handler(context, event):
    reading = event.body if isinstance(event.body, dict) else {}
    device = reading.get("device")
    celsius = reading.get("celsius")
    if not isinstance(device, str) or not device:
        return 400, "a reading needs a `device` name"
    if not isinstance(celsius, (int, float)) or not -90 <= celsius <= 70:
        return 400, "`celsius` must be a number from -90 to 70"
    return {"device": device, "celsius": float(celsius)}
