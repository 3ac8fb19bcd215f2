"""Benchmark: the cost of one sibling call, in-process (fused) vs over loopback HTTP (remote).

    .venv/bin/python dispatcher/bench_calls.py [--calls N] [--k K] [--rounds R] [--worker]

The caller task makes `k` calls to the callee (which sums two numbers) per event; the cost of
one call is the slope between `k = 0` and `k = K` of the p50 event time, `(p50(K) - p50(0)) / K`,
so the event's own cost cancels out. Both sides run in one process and one run, interleaved in
`--rounds` rounds so that the spread shows. "fused" is a dispatcher holding caller and callee;
"remote" is a dispatcher holding only the caller, whose proxy address points at the bare
benchmark server (`examples/bench/bare_server.py`: a `ThreadingHTTPServer`, keep-alive,
TCP_NODELAY) in a child process (so the two sides do not share a GIL) that hosts the callee
behind a dispatcher of its own, so both sides pay the same Nuclio encode/decode work and the
difference is the transport. Each style is measured:
`context.platform.call_function` (a new connection per call, as the SDK does) and
`requests_session.post` (pooled keep-alive connection). Also printed: the extra cost of the
first call an event makes after the dispatcher starts (`first`: one fresh dispatcher's first
event minus its second, the median over `--rounds` fresh dispatchers), and a plain Python
call of the callee's handler with the same Event as the floor.

`--baseline DIR` also measures another version of the dispatcher in the same run, for a
before/after ratio: DIR holds its `fusionizer_dispatcher` package (for a commit REV:
`git archive REV dispatcher/fusionizer_dispatcher | tar -x --strip-components=1 -C DIR`). It is
imported under another name into this process, and its fused caller and this one's alternate
within every round; the ratio this/baseline is taken per round.

`--parts` prints the budget of one in-process `call_function` instead: the whole call and
each of its steps run alone on the arguments the call gives it, in thread CPU time (the
minimum over repeats of `timeit`), so the steps can be compared with the whole; this is the
table of docs/performance.md.

`--worker` also measures the local platform's worker process on a trivial task: one E frame
at a time over its Unix socket (as the Rust side sends them, with the headers the proxy
forwards), printing the round-trip p50/p99 and the worker's CPU time per event (from
`/proc/<pid>/stat`, so Linux only).
"""

import argparse
import json
import socket
import subprocess
import logging
import os
import shutil
import sys
import tempfile
import threading
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.join(os.path.dirname(_HERE), "examples", "bench"))

import nuclio_sdk  # noqa: E402

import bare_server  # noqa: E402
from fusionizer_dispatcher import Dispatcher  # noqa: E402

CALLEE = """
def handler(context, event):
    return {"sum": event.body["x"] + event.body["y"]}
"""

NATIVE = """
import nuclio_sdk

def handler(context, event):
    total = 0
    for _ in range(event.body["k"]):
        response = context.platform.call_function("callee", nuclio_sdk.Event(body={"x": 2, "y": 3}, method="POST"))
        total += response.body["sum"]
    return total
"""

SESSION = """
def handler(context, event, requests_session):
    address = event.headers["Fusionizer-Server-Address"]
    port = event.headers["Fusionizer-Server-Port"]
    total = 0
    for _ in range(event.body["k"]):
        total += requests_session.post(f"http://{address}:{port}/callee", json={"x": 2, "y": 3}).json()["sum"]
    return total
"""


def _artifact(root, tasks):
    for name, source in tasks.items():
        directory = os.path.join(root, "fusionizer_tasks", name)
        os.makedirs(directory)
        with open(os.path.join(directory, "main.py"), "w") as out:
            out.write(source)


def _dispatcher(root, tasks, dispatcher_class=Dispatcher):
    dispatcher = dispatcher_class(function="bench", tasks={t: "main:handler" for t in tasks}, root=root)
    logger = nuclio_sdk.Logger(logging.WARNING, name="bench")
    context = nuclio_sdk.Context(logger, nuclio_sdk.Platform("local"), "0",
                                 nuclio_sdk.TriggerInfo("http", "default-http"))
    dispatcher.init_context(context)
    return dispatcher, context


def _serve(dispatcher, context):
    """The callee behind the project's bare benchmark server (`examples/bench/bare_server.py`):
    the dispatcher holds only the callee, so it routes every request there."""
    server = bare_server.make_server(dispatcher.handler, context)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _answer(result):
    """The caller's answer as a client would read it (the dispatcher may wrap it in a Response
    carrying the call records for the proxy)."""
    if isinstance(result, nuclio_sdk.Response):
        return int(result.body)
    return result


def _event(host, port, k):
    return nuclio_sdk.Event(body={"k": k}, headers={
        "Task-Name": "caller", "Fusionizer-Server-Address": host,
        "Fusionizer-Server-Port": str(port)}, method="POST", path="/caller")


def _p50(dispatcher, context, event, calls, expected):
    handler = dispatcher.handler
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        start = clock()
        result = handler(context, event)
        samples.append(clock() - start)
    if _answer(result) != expected:
        raise SystemExit("unexpected result {0!r}".format(result))
    samples.sort()
    return samples[len(samples) // 2] / 1000.0


def _per_call(dispatcher, context, host, port, k, calls):
    """(p50 event time at k = 0, per-call slope in us)."""
    base = _p50(dispatcher, context, _event(host, port, 0), calls, 0)
    loaded = _p50(dispatcher, context, _event(host, port, k), max(20, calls // k), 5 * k)
    return base, (loaded - base) / k


def _first_call(root, tasks, host, port):
    """A fresh dispatcher's first event with one call minus its second, in us."""
    dispatcher, context = _dispatcher(root, tasks)
    event = _event(host, port, 1)
    clock = time.perf_counter_ns
    times = []
    for _ in range(2):
        start = clock()
        _answer(dispatcher.handler(context, event))
        times.append(clock() - start)
    return (times[0] - times[1]) / 1000.0


def _plain_call(root, calls):
    """A plain Python call of the callee's handler with a new Event, in us (the floor)."""
    dispatcher, _ = _dispatcher(root, ["callee"])
    task = dispatcher.tasks["callee"]
    handler, context = task.handler, task.context
    clock = time.perf_counter_ns
    samples = []
    for _ in range(calls):
        start = clock()
        handler(context, nuclio_sdk.Event(body={"x": 2, "y": 3}, method="POST"))
        samples.append(clock() - start)
    samples.sort()
    return samples[len(samples) // 2] / 1000.0


def _baseline_class(directory, scratch):
    """The `Dispatcher` of the package `fusionizer_dispatcher` in `directory`, imported as
    `baseline_dispatcher` (a copy in `scratch`; its imports are relative)."""
    source = os.path.join(directory, "fusionizer_dispatcher")
    if not os.path.isfile(os.path.join(source, "dispatcher.py")):
        raise SystemExit("--baseline {0}: no fusionizer_dispatcher/dispatcher.py there".format(directory))
    shutil.copytree(source, os.path.join(scratch, "baseline_dispatcher"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, scratch)
    import baseline_dispatcher
    return baseline_dispatcher.Dispatcher


def _parts(root, repeats=7, number=20000):
    """(name, thread CPU us) of one in-process call_function and of each step it takes."""
    import timeit
    from fusionizer_dispatcher import _codec, dispatcher as module

    dispatcher, _ = _dispatcher(root, ["caller", "callee"])
    platform = dispatcher.tasks["caller"].context.platform
    module._CURRENT.set(module._Frame("caller", ("127.0.0.1", 8000)))
    Event = nuclio_sdk.Event

    def make():
        return Event(body={"x": 2, "y": 3}, method="POST")

    event = make()
    method, body, pairs, text = _codec.call_request("callee", event)
    proxy = dispatcher._proxy()
    platform.call_function("callee", make())  # makes the call's plan
    key = ("caller", "callee", proxy, pairs, len(body))
    headers, content_type, path, frame, _ = dispatcher._call_plans[key]
    trigger = dispatcher._trigger()
    callee_event = _codec.new_event(body, content_type, headers.copy(), method, path, {}, trigger, text)
    out = dispatcher._run_task("callee", callee_event, proxy, frame)
    handler = dispatcher.tasks["callee"].handler
    steps = [
        ("the whole call: call_function(\"callee\", Event(...))", lambda: platform.call_function("callee", make())),
        ("  the caller's own Event(body=..., method=\"POST\")", make),
        ("  the request: checks, json.dumps of the body, header pairs (call_request)",
         lambda: _codec.call_request("callee", event)),
        ("  the call's plan, looked up", lambda: dispatcher._call_plans.get(key)),
        ("  the callee's event: decoded body, id, time, Event (new_event)",
         lambda: _codec.new_event(body, content_type, headers.copy(), method, path, {}, trigger, text)),
        ("  running the callee in its frame and encoding its answer (_run_task)",
         lambda: dispatcher._run_task("callee", callee_event, proxy, frame)),
        ("    of which the callee's handler", lambda: handler(None, callee_event)),
        ("    of which encoding the answer", lambda: _codec.encode_output_text({"sum": 5})),
        ("  the SDK's answer (plain_sdk_response)",
         lambda: _codec.plain_sdk_response(200, "application/json", out[3], out[4])),
    ]
    results = []
    for name, function in steps:
        best = min(timeit.repeat(function, number=number, repeat=repeats, timer=time.thread_time))
        results.append((name, best / number * 1e6))
        dispatcher.trace.clear()
    return results


def _spread(values):
    values = sorted(values)
    return values[len(values) // 2], values[0], values[-1]


HELLO = """
def handler(context, event):
    return "hello"
"""

ENTRY = """import os
from fusionizer_dispatcher import Dispatcher
_dispatcher = Dispatcher(function="bench", tasks={"hello": "main:handler"},
                         root=os.path.dirname(os.path.abspath(__file__)))
init_context = _dispatcher.init_context
handler = _dispatcher.handler
"""


def _worker_cpu_seconds(pid):
    with open("/proc/{0}/stat".format(pid)) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure_worker(root, calls):
    """Round trips of E frames through a real worker subprocess; (p50, p99, CPU us per event)."""
    _artifact(root, {"hello": HELLO})
    with open(os.path.join(root, "_fusionizer_entry.py"), "w") as out:
        out.write(ENTRY)
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copytree(os.path.join(here, "fusionizer_dispatcher"), os.path.join(root, "fusionizer_dispatcher"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    path = os.path.join(root, "w.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(30)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONIZER_")}
    env["PYTHONPATH"] = root
    worker = subprocess.Popen(
        [sys.executable, "-u", "-m", "fusionizer_dispatcher.worker", "--socket", path,
         "--handler", "_fusionizer_entry:handler", "--worker-id", "0", "--function", "bench"],
        cwd=root, env=env)
    try:
        conn, _ = listener.accept()
        conn.settimeout(30)
        reader = conn.makefile("rb")

        def read_frame():
            length = int.from_bytes(reader.read(4), "big")
            payload = reader.read(length)
            if len(payload) != length:
                raise SystemExit("worker closed the socket")
            return payload[:1]

        if read_frame() != b"S":
            raise SystemExit("worker did not start")
        meta = json.dumps({
            "id": "bench", "method": "POST", "path": "/hello", "fields": {},
            "headers": {"Host": "127.0.0.1:8000", "User-Agent": "bench", "Accept-Encoding": "identity",
                        "Content-Length": "0", "Task-Name": "hello",
                        "Fusionizer-Server-Address": "127.0.0.1", "Fusionizer-Server-Port": "8000"},
            "content_type": "", "timestamp": int(time.time()),
            "trigger": {"kind": "http", "name": "default-http"},
        }).encode()
        payload = b"E" + len(meta).to_bytes(4, "big") + meta
        frame = len(payload).to_bytes(4, "big") + payload
        for _ in range(min(500, calls)):
            conn.sendall(frame)
            if read_frame() != b"R":
                raise SystemExit("unexpected frame from the worker")
        samples = []
        clock = time.perf_counter_ns
        cpu = _worker_cpu_seconds(worker.pid)
        for _ in range(calls):
            start = clock()
            conn.sendall(frame)
            kind = read_frame()
            samples.append(clock() - start)
            if kind != b"R":
                raise SystemExit("unexpected frame from the worker")
        cpu = _worker_cpu_seconds(worker.pid) - cpu
        conn.sendall((1).to_bytes(4, "big") + b"Q")
        worker.wait(timeout=30)
        conn.close()
    finally:
        listener.close()
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    samples.sort()
    p99 = samples[min(len(samples) - 1, len(samples) * 99 // 100)]
    return samples[len(samples) // 2] / 1000.0, p99 / 1000.0, cpu / calls * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="measured events per case at k = 0")
    parser.add_argument("--k", type=int, default=50, help="calls per event for the slope")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also measure the dispatcher package in DIR/fusionizer_dispatcher, "
                             "alternating with this one")
    parser.add_argument("--parts", action="store_true",
                        help="print the budget of one in-process call_function, step by step")
    parser.add_argument("--worker", action="store_true",
                        help="also measure the local worker's per-event path")
    parser.add_argument("--serve-callee", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_callee:
        server = _serve(*_dispatcher(args.serve_callee, ["callee"]))
        print(server.server_address[1], flush=True)
        sys.stdin.read()
        return
    root = tempfile.mkdtemp(prefix="fz-bench-")
    try:
        if args.parts:
            parts_root = os.path.join(root, "parts")
            _artifact(parts_root, {"caller": NATIVE, "callee": CALLEE})
            for name, micros in _parts(parts_root):
                print("{0:<78} {1:6.2f} us".format(name, micros))
            return
        baseline = None
        if args.baseline:
            os.makedirs(os.path.join(root, "baseline"))
            baseline = _baseline_class(os.path.abspath(args.baseline), os.path.join(root, "baseline"))
        for style, source in (("call_function", NATIVE), ("requests_session", SESSION)):
            fused_root = os.path.join(root, style, "fused")
            remote_root = os.path.join(root, style, "remote")
            callee_root = os.path.join(root, style, "callee")
            _artifact(fused_root, {"caller": source, "callee": CALLEE})
            _artifact(remote_root, {"caller": source})
            _artifact(callee_root, {"callee": CALLEE})
            child = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--serve-callee", callee_root],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            try:
                host, port = "127.0.0.1", int(child.stdout.readline())
                pairs = {"fused": _dispatcher(fused_root, ["caller", "callee"]),
                         "remote": _dispatcher(remote_root, ["caller"])}
                if baseline is not None:
                    baseline_root = os.path.join(root, style, "baseline")
                    shutil.copytree(fused_root, baseline_root)
                    pairs["baseline"] = _dispatcher(baseline_root, ["caller", "callee"], baseline)
                for pair in pairs.values():  # warm-up
                    _p50(*pair, _event(host, port, args.k), 20, 5 * args.k)
                rows = {mode: [] for mode in pairs}
                rows["first"] = []
                modes = list(pairs)
                for r in range(args.rounds):
                    for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
                        rows[mode].append(_per_call(*pairs[mode], host, port, args.k, args.calls))
                    # a fresh copy: its task modules are imported anew, as in a new worker
                    fresh_root = os.path.join(root, style, "first{0}".format(r))
                    shutil.copytree(fused_root, fresh_root)
                    rows["first"].append(_first_call(fresh_root, ["caller", "callee"], host, port))
            finally:
                child.stdin.close()
                child.wait()
            fused_call = _spread([c for _, c in rows["fused"]])
            remote_call = _spread([c for _, c in rows["remote"]])
            ratios = _spread([r[1] / f[1] for f, r in zip(rows["fused"], rows["remote"])])
            first = _spread(rows["first"])
            print("{0:<17} per call (slope k=0..{1}, p50, median of {2} rounds [min-max]): "
                  "fused {3:7.1f} us [{4:.1f}-{5:.1f}] | remote {6:7.1f} us [{7:.1f}-{8:.1f}] | "
                  "remote/fused {9:5.1f}x [{10:.1f}-{11:.1f}] | first call +{12:.0f} us".format(
                      style, args.k, args.rounds, *fused_call, *remote_call, *ratios, first[0]))
            if baseline is not None:
                base_call = _spread([c for _, c in rows["baseline"]])
                change = _spread([f[1] / b[1] for f, b in zip(rows["fused"], rows["baseline"])])
                print("{0:<17} baseline fused {1:7.1f} us [{2:.1f}-{3:.1f}] | this/baseline per round "
                      "{4:5.2f}x [{5:.2f}-{6:.2f}]".format(style, *base_call, *change))
        print("{0:<17} a plain Python call of the callee with a new Event: {1:.1f} us".format(
            "floor", _plain_call(os.path.join(root, "call_function", "callee"), args.calls)))
        if args.worker:
            p50, p99, cpu = _measure_worker(os.path.join(root, "worker"), max(args.calls, 5000))
            print("{0:<17} round trip p50 {1:8.1f} us  p99 {2:8.1f} us | worker CPU {3:6.1f} us/event".format(
                "worker", p50, p99, cpu))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
