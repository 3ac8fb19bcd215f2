#!/usr/bin/env python3
"""A `kind = "command"` optimizer: fuse the hottest synchronous edge, one step per run.

Reads the request (docs/optimizer-request.schema.json) on stdin and prints the answer
(docs/optimizer-response.schema.json) on stdout. Of the synchronous edges whose two tasks run in
different functions, with at least `settings.min_calls` calls, it takes the busiest (ties: by
caller, then callee) whose two groups share one runtime, and merges those two groups. With no
such edge it keeps the grouping. Run after run, the grouping grows towards the synchronously
connected components, one edge at a time. Python 3 standard library only.
"""

import json
import sys


def sync_calls(traces):
    """(caller, callee) -> calls, in-process and proxied summed, synchronous only."""
    calls = {}
    for edge in traces["edges"]:
        if edge["mode"] == "sync" and edge["caller"] != edge["callee"]:
            key = (edge["caller"], edge["callee"])
            calls[key] = calls.get(key, 0) + edge["count"]
    return calls


def main():
    request = json.load(sys.stdin)
    if request["version"] != 1:
        print(f"protocol version {request['version']} is not supported", file=sys.stderr)
        return 1
    runtime = {task["name"]: task["runtime"] for task in request["tasks"]}
    groups = [list(group) for group in request["grouping"]]
    group_of = {task: i for i, group in enumerate(groups) for task in group}
    min_calls = request["settings"]["min_calls"]

    candidates = sorted(
        ((-count, caller, callee) for (caller, callee), count in sync_calls(request["traces"]).items()),
    )
    for negative, caller, callee in candidates:
        count = -negative
        if count < min_calls or caller not in group_of or callee not in group_of:
            continue
        a, b = group_of[caller], group_of[callee]
        if a == b:
            continue
        if len({runtime[t] for t in groups[a] + groups[b]}) != 1:
            continue
        merged = sorted(groups[a] + groups[b])
        rest = [sorted(g) for i, g in enumerate(groups) if i not in (a, b)]
        answer = {
            "version": 1,
            "grouping": sorted(rest + [merged]),
            "reason": f"hottest edge {caller} -> {callee} ({count} sync calls): fused",
        }
        json.dump(answer, sys.stdout)
        print()
        return 0
    json.dump({"version": 1, "keep": True, "reason": "no synchronous edge left to fuse"}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
