"""Keeps the last readings per device in memory and answers the reading's id."""

import itertools

_ids = itertools.count(1)
_last = {}


def handler(context, event):
    reading = event.body
    history = _last.setdefault(reading["device"], [])
    history.append(reading["celsius"])
    del history[:-100]
    return {"id": next(_ids), "kept": len(history)}
