#!/usr/bin/env python3
"""A `kind = "command"` optimizer: a threshold rule.

Every synchronous edge that carries at least SHARE (default 10 %, `--share 0.2` to change) of all
observed synchronous calls, and at least `settings.min_calls` calls, joins its two tasks; the
groups are the connected components of those edges. Asynchronous edges never join anything.
Tasks of different runtimes are never joined. When the result is the grouping in force it
answers `keep`. Reads the request (docs/optimizer-request.schema.json) on stdin and prints the
answer (docs/optimizer-response.schema.json). Python 3 standard library only.
"""

import argparse
import json
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", type=float, default=0.10)
    args = parser.parse_args()

    request = json.load(sys.stdin)
    if request["version"] != 1:
        print(f"protocol version {request['version']} is not supported", file=sys.stderr)
        return 1
    runtime = {task["name"]: task["runtime"] for task in request["tasks"]}
    min_calls = request["settings"]["min_calls"]

    calls = {}
    for edge in request["traces"]["edges"]:
        if edge["mode"] != "sync" or edge["caller"] == edge["callee"]:
            continue
        if edge["caller"] not in runtime or edge["callee"] not in runtime:
            continue
        key = (edge["caller"], edge["callee"])
        calls[key] = calls.get(key, 0) + edge["count"]
    total = sum(calls.values())

    # Union-find over the tasks; each root remembers its runtime.
    parent = {task: task for task in runtime}

    def root(task):
        while parent[task] != task:
            parent[task] = parent[parent[task]]
            task = parent[task]
        return task

    joined = []
    for (caller, callee), count in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0])):
        if count < min_calls or count < args.share * total:
            continue
        a, b = root(caller), root(callee)
        if a == b or runtime[a] != runtime[b]:
            continue
        parent[max(a, b)] = min(a, b)
        joined.append(f"{caller} -> {callee} ({count})")

    components = {}
    for task in runtime:
        components.setdefault(root(task), []).append(task)
    grouping = sorted(sorted(group) for group in components.values())
    current = sorted(sorted(group) for group in request["grouping"])
    if grouping == current:
        answer = {"version": 1, "keep": True, "reason": "the grouping in force already follows the rule"}
    else:
        answer = {
            "version": 1,
            "grouping": grouping,
            "reason": f"sync edges with at least {args.share:.0%} of {total} calls: " + ", ".join(joined),
        }
    json.dump(answer, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
