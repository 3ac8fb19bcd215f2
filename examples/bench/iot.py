#!/usr/bin/env python3
"""The IoT evaluation: does the optimizer's grouping pay? End-to-end latency of `POST /ingest`
on examples/iot in three groupings, side by side in one run.

    python3 examples/bench/iot.py [--quick] [--out DIR] [--binary PATH] [--keep]

examples/iot has Fusionize's call graph: `ingest` calls `validate` and `enrich` synchronously,
`enrich` calls `store` synchronously, and `ingest` hands every reading to a slow `archive`
(~50 ms) without waiting (`Prefer: respond-async`). Three `fusionizer serve` processes run at
once on the local platform, one per grouping:

- separate: every task in its own function (every call crosses the proxy);
- fused: all five tasks in one function (every call in-process, the asynchronous one included:
  the worker runs it after it has answered, so the next request may wait for it);
- proposal: what `fusionizer optimize` proposes from the traces of the separate serve after a
  training load (the synchronously connected tasks together, `archive` apart).

Two loads, each in rounds that alternate the order of the groupings: closed loop at
concurrency 1 (the next request as soon as the last answered), and paced: readings arriving at
random (a Poisson process, seeded, the same arrival times for every grouping) at RATE per second
from four client threads, an open-loop load like independent sensors, slow enough that every
grouping keeps up with its synchronous work. Reports median and p99 (and the rest) per grouping
and load, the asynchronous calls serve accepted or refused, and a plot.

Reuses run.py's helpers (the process set, the keep-alive client, serve, the summaries and the
plot's panels). Writes iot.md, iot.json and iot.svg to --out (default examples/bench/results/).
"""

import argparse
import json
import os
import re
import shutil
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import run as bench  # noqa: E402
import svgplot  # noqa: E402

IOT = os.path.join(ROOT, "examples", "iot")
TASKS = ("archive", "enrich", "ingest", "store", "validate")
GROUPINGS = ("separate", "fused", "proposal")
LOADS = ("closed", "paced")
PACED_THREADS = 4

svgplot.COLORS.update(separate="#ff7f0e", fused="#d62728", proposal="#1f77b4")
svgplot.LABELS.update(separate="every task alone", fused="all five fused",
                      proposal="optimizer's proposal")


class Settings:
    """Sample counts and time bounds: every loop has a max count and a deadline."""

    def __init__(self, quick):
        self.quick = quick
        self.rounds = 2 if quick else 3
        self.train_seconds = 3.0 if quick else 6.0
        self.seconds = 4.0 if quick else 8.0
        self.paced_seconds = 8.0 if quick else 20.0
        self.max_count = 5000
        self.rate = 12.0
        self.warmup = 20
        self.start_timeout = 600.0


def write_project(root, name, groups):
    """A copy of examples/iot named `name` whose only phase is `groups`."""
    shutil.copytree(os.path.join(IOT, "tasks"), os.path.join(root, "tasks"))
    lines = ["[project]", 'name = "{0}"'.format(name), 'platform = "local"', "", "[tasks]"]
    lines += ['{0} = "tasks/{0}"'.format(t) for t in TASKS]
    lines += ["", "[[phase]]", 'after = "0s"', "groups = {0}".format(json.dumps(groups))]
    with open(os.path.join(root, "fusion.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return root


def reading(i):
    celsius = (i % 60) - 10.0
    return {"device": "t-{0}".format(i % 7), "celsius": celsius}


PROBLEMS = []


def check(status, data, payload):
    """Whether the answer is right; the first few wrong ones are kept for the log."""
    problem = None
    if status != 200:
        problem = "/ingest answered {0}: {1!r}".format(status, data[:300])
    else:
        try:
            answer = json.loads(data)
            want = round(payload["celsius"] * 9 / 5 + 32, 2)
            if abs(answer["fahrenheit"] - want) > 0.01:
                problem = "unexpected answer {0!r} to {1!r}".format(answer, payload)
        except (ValueError, KeyError, TypeError) as e:
            problem = "unreadable answer {0!r}: {1}".format(data[:300], e)
    if problem and len(PROBLEMS) < 10:
        PROBLEMS.append(problem)
    return problem is None


def closed_loop(port, seconds, max_count):
    """Concurrency 1: latencies (ns) of back-to-back readings for `seconds`; (latencies, failed)."""
    client = bench.Client(port)
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    latencies, failed, i = [], 0, 0
    while len(latencies) < max_count and clock() < deadline:
        payload = reading(i)
        i += 1
        start = clock()
        status, data = client.post_json("/ingest", payload)
        took = clock() - start
        if check(status, data, payload):
            latencies.append(took)
        else:
            failed += 1
    client.close()
    return latencies, failed


def arrivals(rate, seconds, seed):
    """Poisson arrival times (ns from the start) at `rate` per second over `seconds`."""
    rng = random.Random(seed)
    out, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= seconds:
            return out
        out.append(int(t * 1e9))


def paced(port, schedule, threads=PACED_THREADS):
    """Readings at the times of `schedule` (ns from the start) from `threads` keep-alive
    clients: each takes the next arrival, waits for its time and sends. Latency is from the
    arrival time (a reading that had to wait for a free client counts the wait: no coordinated
    omission). Returns (latencies ns, failed, late: readings sent more than 1 ms after their
    arrival)."""
    lock = threading.Lock()
    state = {"next": 0}
    start = time.perf_counter_ns() + 200_000_000
    total = len(schedule)
    out = [[] for _ in range(threads)]
    failed, late = [0] * threads, [0] * threads

    def run(slot):
        client = bench.Client(port)
        while True:
            with lock:
                n = state["next"]
                state["next"] += 1
            if n >= total:
                break
            due = start + schedule[n]
            wait = due - time.perf_counter_ns()
            if wait > 0:
                time.sleep(wait / 1e9)
            elif wait < -1_000_000:
                late[slot] += 1
            payload = reading(n)
            status, data = client.post_json("/ingest", payload)
            if check(status, data, payload):
                out[slot].append(time.perf_counter_ns() - due)
            else:
                failed[slot] += 1
        client.close()

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return [x for o in out for x in o], sum(failed), sum(late)


def async_calls(port):
    """fusionizer_async_calls_total by result (`accepted`, `rejected`, `ok`, `failed`)."""
    status, body = bench.Client(port).request("GET", "/-/metrics")
    counts = {}
    if status == 200:
        for line in body.decode().splitlines():
            m = re.match(r'fusionizer_async_calls_total\{result="(\w+)"\} (\S+)', line)
            if m:
                counts[m.group(1)] = counts.get(m.group(1), 0) + float(m.group(2))
    return counts


def wait_idle(port, timeout=60.0):
    """Waits (bounded) until serve has no request in flight and has run every asynchronous call
    it accepted, so that the archive calls one measurement queued do not run into the next."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = bench.Client(port, timeout=5).request("GET", "/-/routes")
        calls = async_calls(port)
        done = calls.get("ok", 0) + calls.get("failed", 0)
        if (status == 200 and done >= calls.get("accepted", 0)
                and all(r["inflight"] == 0 for r in json.loads(body)["routes"].values())):
            return True
        time.sleep(0.05)
    bench.log("serve on port {0} still busy after {1:.0f}s; measuring anyway".format(port, timeout))
    return False


def wait_ready(serve, timeout):
    """Seconds until `serve` listens and `/-/health` answers 200 (the start phase is deployed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serve.proc.poll() is not None:
            raise SystemExit("fusionizer serve exited with {0}:\n{1}".format(
                serve.proc.returncode, serve.tail()))
        if serve.port is not None:
            status, _ = bench.Client(serve.port, timeout=5).request("GET", "/-/health")
            if status == 200:
                return time.monotonic() - serve.started
        time.sleep(0.05)
    raise SystemExit("fusionizer serve was not ready within {0:.0f}s:\n{1}".format(timeout, serve.tail()))


def optimize(binary, project, port, env):
    """`fusionizer optimize --from` the separate serve: the proposal and the whole report."""
    argv = [binary, "-C", project, "optimize", "--from", "http://127.0.0.1:{0}".format(port),
            "--output", "json"]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    if proc.returncode not in (0, 2):
        raise SystemExit("{0} exited {1}: {2}".format(" ".join(argv), proc.returncode,
                                                      proc.stderr.decode()[-2000:]))
    return json.loads(proc.stdout), " ".join(["fusionizer", "optimize", "--from", "URL",
                                               "--output", "json"])


def measure(settings, serves):
    """Both loads, rounds interleaved (the order rotates every round)."""
    results = {load: {g: {"rounds": [], "samples": [], "failed": 0, "late": 0} for g in GROUPINGS}
               for load in LOADS}
    for load in LOADS:
        for g in GROUPINGS:
            wait_idle(serves[g].port)
        before = {g: async_calls(serves[g].port) for g in GROUPINGS}
        for r in range(settings.rounds):
            order = GROUPINGS[r % 3:] + GROUPINGS[:r % 3]
            for g in order:
                serve = serves[g]
                wait_idle(serve.port)
                if load == "closed":
                    samples, failed = closed_loop(serve.port, settings.seconds, settings.max_count)
                    late = 0
                else:
                    schedule = arrivals(settings.rate, settings.paced_seconds, seed=r)
                    samples, failed, late = paced(serve.port, schedule)
                cell = results[load][g]
                summary = bench.summary_us(samples)
                cell["rounds"].append(summary)
                cell["samples"].extend(samples)
                cell["failed"] += failed
                cell["late"] += late
                bench.log("{0:<6} round {1} {2:<9} n={3:<5} p50 {4:8.0f} µs  p99 {5:8.0f} µs  failed {6}"
                          "  [load {7}]".format(load, r + 1, g, summary.get("n", 0), summary.get("p50", 0),
                                                summary.get("p99", 0), failed,
                                                " ".join(map(str, bench.loadavg()))))
        for g in GROUPINGS:
            wait_idle(serves[g].port)
            after = async_calls(serves[g].port)
            results[load][g]["async"] = {k: after.get(k, 0) - before[g].get(k, 0) for k in after}
    for load in LOADS:
        for g in GROUPINGS:
            cell = results[load][g]
            cell["latency_us"] = bench.summary_us(cell.pop("samples"))
            cell["p50_rounds"] = [s.get("p50") for s in cell["rounds"]]
            cell["p99_rounds"] = [s.get("p99") for s in cell["rounds"]]
    return results


def groups_text(groups):
    return " ".join("[{0}]".format(", ".join(g)) for g in groups)


def verdicts(results):
    """The evaluation's claims, each with what was measured and whether it holds."""
    out = []
    for load in LOADS:
        lat = {g: results["loads"][load][g]["latency_us"] for g in GROUPINGS}
        p50 = {g: lat[g]["p50"] for g in GROUPINGS}
        p99 = {g: lat[g]["p99"] for g in GROUPINGS}
        out.append(("{0}: proposal at or below all-fused on median".format(load),
                    "{0:.0f} vs {1:.0f} µs".format(p50["proposal"], p50["fused"]),
                    p50["proposal"] <= p50["fused"]))
        out.append(("{0}: proposal below all-separate on median".format(load),
                    "{0:.0f} vs {1:.0f} µs".format(p50["proposal"], p50["separate"]),
                    p50["proposal"] < p50["separate"]))
        out.append(("{0}: all-fused pays for the async fan-out in p99 (above the proposal)".format(load),
                    "{0:.0f} vs {1:.0f} µs".format(p99["fused"], p99["proposal"]),
                    p99["fused"] > p99["proposal"]))
    return out


def render_markdown(results):
    m = results["machine"]
    lines = [
        "# IoT evaluation: every task alone, all fused, the optimizer's proposal",
        "",
        "`{0}` on {1}: {2} cores, {3}; Linux {4}, Python {5}; load average {6} at start, {7} at end."
        .format(results["command"], results["date"], m["cores"], m["cpu"], m["kernel"], m["python"],
                " / ".join(map(str, m["loadavg_start"])), " / ".join(map(str, m["loadavg_end"]))),
        "Local platform, loopback only; `POST /ingest` end to end as the client saw it, in µs. "
        "Three serves side by side, rounds interleaved ({0} rounds per grouping and load: {1:.0f} s closed "
        "loop, {2:.0f} s paced).".format(results["rounds"], results["seconds"], results["paced_seconds"]),
        "",
        "| grouping | functions |",
        "|---|---|",
    ]
    for g in GROUPINGS:
        lines.append("| {0} | {1} |".format(g, groups_text(results["groupings"][g])))
    lines += ["", "The proposal is `fusionizer optimize`'s, from {0} training readings on the separate serve "
              "(expected gain {1:.2f}).".format(results["training"]["readings"],
                                                results["optimize"]["gain"]["expected"]), ""]
    titles = {"closed": "Closed loop, concurrency 1 (the next reading as soon as the last is answered)",
              "paced": "Paced: {0:g} readings/s arriving at random (Poisson) from {1} clients "
                       "(latency from the arrival time)".format(results["rate"], PACED_THREADS)}
    for load in LOADS:
        lines += ["## " + titles[load], "",
                  "| grouping | n | p50 | p90 | p99 | max | p50 per round | p99 per round | failed |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for g in GROUPINGS:
            c = results["loads"][load][g]
            s = c["latency_us"]
            lines.append("| {0} | {1} | {2:.0f} | {3:.0f} | {4:.0f} | {5:.0f} | {6} | {7} | {8} |".format(
                g, s["n"], s["p50"], s["p90"], s["p99"], s["max"],
                " / ".join("{0:.0f}".format(v) for v in c["p50_rounds"]),
                " / ".join("{0:.0f}".format(v) for v in c["p99_rounds"]), c["failed"]))
        lines.append("")
    lines += ["## Asynchronous calls to `archive` through serve (`fusionizer_async_calls_total`)", "",
              "| load | grouping | accepted | refused (queue full, 503) | ran ok | failed |",
              "|---|---|---|---|---|---|"]
    for load in LOADS:
        for g in GROUPINGS:
            a = results["loads"][load][g]["async"]
            lines.append("| {0} | {1} | {2:.0f} | {3:.0f} | {4:.0f} | {5:.0f} |".format(
                load, g, a.get("accepted", 0), a.get("rejected", 0), a.get("ok", 0), a.get("failed", 0)))
    lines += ["", "In the fused grouping `archive` runs in-process (after the worker has answered, on the same "
              "worker), so serve never sees those calls. In the other two, a call to `archive` goes through "
              "serve's bounded queue of asynchronous calls: when `archive` (one worker, ~50 ms a reading) "
              "falls behind, as it does under the closed loop, the queue refuses the excess with 503 and "
              "`ingest` answers anyway; the fused function instead runs every archive in line, and the next "
              "reading waits for it.", "",
              "## The claims", "", "| claim | measured | holds |", "|---|---|---|"]
    for name, measured, ok in results["verdicts"]:
        lines.append("| {0} | {1} | {2} |".format(name, measured, "yes" if ok else "**no**"))
    lines.append("")
    return "\n".join(lines)


def render_svg(results):
    out = []
    m = results["machine"]
    height = 380
    out.append('<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}">'.format(
        svgplot.WIDTH, height * 2 + 30))
    out.append('<rect width="100%" height="100%" fill="white"/>')
    for i, load in enumerate(LOADS):
        groups = [("{0}".format(g), {g: results["loads"][load][g]["latency_us"]}) for g in GROUPINGS]
        title = {"closed": "examples/iot, POST /ingest, closed loop at concurrency 1",
                 "paced": "examples/iot, POST /ingest, {0:g} readings/s arriving at random".format(
                     results["rate"])}[load]
        svgplot._panel(out, height * i, height, title, groups, GROUPINGS,
                       "box p25–p75, line p50, whiskers p1–p99; end to end, as the client saw it")
    out.append(svgplot._text(svgplot.WIDTH / 2, height * 2 + 18,
                             "fusionizer IoT evaluation, {0}; {1} cores, {2}; load average {3}".format(
                                 results["date"], m["cores"], m["cpu"], " / ".join(map(str, m["loadavg_start"]))),
                             size=10, extra='fill="#555"'))
    out.append("</svg>\n")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples: about two minutes")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="output directory")
    parser.add_argument("--binary", help="use this fusionizer binary instead of building one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects and logs")
    args = parser.parse_args()

    settings = Settings(args.quick)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs = bench.Procs()
    work = tempfile.mkdtemp(prefix="fusionizer-iot-")
    started = time.monotonic()
    command = "python3 examples/bench/iot.py" + (" --quick" if args.quick else "")
    try:
        results = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "quick": settings.quick,
                   "command": command, "machine": bench.machine(), "rounds": settings.rounds,
                   "seconds": settings.seconds, "paced_seconds": settings.paced_seconds,
                   "rate": settings.rate}
        if args.binary:
            binary = os.path.abspath(args.binary)
        else:
            binary, _ = bench.build_binary()
        cache = bench.cache_dir()
        os.makedirs(cache, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FUSIONIZER_", "NUCTL_"))}
        env.update(FUSIONIZER_CACHE_DIR=cache, NO_COLOR="1")

        alone = [[t] for t in TASKS]
        projects = {"separate": write_project(os.path.join(work, "separate"), "iotseparate", alone)}
        serves = {"separate": bench.Serve(procs, binary, projects["separate"], env, ["--no-schedule"],
                                          os.path.join(work, "serve-separate.log"))}
        bench.log("serve (every task alone) ready in {0:.1f}s".format(
            wait_ready(serves["separate"], settings.start_timeout)))

        # Training: readings into the separate serve, then the optimizer's proposal from its traces.
        samples, failed = closed_loop(serves["separate"].port, settings.train_seconds, settings.max_count)
        if failed:
            raise SystemExit("{0} training readings failed: {1}".format(failed, PROBLEMS))
        report, optimize_command = optimize(binary, projects["separate"], serves["separate"].port, env)
        results["training"] = {"readings": len(samples)}
        results["optimize"] = {"command": optimize_command, "gain": report["gain"],
                               "edges": [{k: e[k] for k in ("caller", "callee", "mode", "calls", "decision")}
                                         for e in report["edges"]]}
        results["groupings"] = {"separate": alone, "fused": [list(TASKS)], "proposal": report["proposed"]}
        bench.log("the optimizer proposes {0}".format(groups_text(report["proposed"])))

        for g, name in (("fused", "iotfused"), ("proposal", "iotproposal")):
            projects[g] = write_project(os.path.join(work, g), name, results["groupings"][g])
            serves[g] = bench.Serve(procs, binary, projects[g], env, ["--no-schedule"],
                                    os.path.join(work, "serve-{0}.log".format(g)))
            bench.log("serve ({0}) ready in {1:.1f}s".format(g, wait_ready(serves[g], settings.start_timeout)))
        for g in GROUPINGS:
            for i in range(settings.warmup):
                payload = reading(i)
                status, data = bench.Client(serves[g].port).post_json("/ingest", payload)
                if not check(status, data, payload):
                    raise SystemExit("{0}: {1}".format(g, PROBLEMS[-1]))

        results["loads"] = measure(settings, serves)
        results["machine"]["loadavg_end"] = bench.loadavg()
        results["problems"] = PROBLEMS
        results["verdicts"] = verdicts(results)
        results["elapsed_s"] = time.monotonic() - started

        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "iot.md"), "w") as f:
            f.write(render_markdown(results))
        with open(os.path.join(args.out, "iot.json"), "w") as f:
            json.dump(dict(results, verdicts=[{"claim": n, "measured": v, "holds": ok}
                                              for n, v, ok in results["verdicts"]]),
                      f, indent=1, sort_keys=True)
            f.write("\n")
        with open(os.path.join(args.out, "iot.svg"), "w") as f:
            f.write(render_svg(results))
        for name, measured, ok in results["verdicts"]:
            print("{0:8} {1}: {2}".format("holds" if ok else "NO", name, measured), flush=True)
        bench.log("done in {0:.0f}s; wrote {1}/iot.md, iot.json, iot.svg".format(results["elapsed_s"], args.out))
    finally:
        procs.stop_all()
        if args.keep:
            bench.log("kept {0}".format(work))
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
