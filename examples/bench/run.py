#!/usr/bin/env python3
"""fusionizer benchmarks: fusion payoff, in-group call cost, the worker hop and its floor, proxy
cost, regroup, footprint.

    python3 examples/bench/run.py [--quick] [--out DIR] [--update-docs] [--generator auto|wrk|python]

Builds `fusionizer` in release mode, sets up its own temporary projects (task sources in
examples/bench/tasks/) and measures everything in one run on the local platform, loopback only,
with `wrk` as the load generator when it is installed (else its own Python client). Prints every
target with its measured value and met / not met; writes results.md (the tables and the
targets), results.json (the numbers) and latency.svg (latency distributions) to --out (default:
examples/bench/results/), and with --update-docs the same tables into docs/performance.md.

The driver uses the standard library only. The bare-Python baseline server runs in a virtualenv
the driver creates once under the fusionizer cache dir ($FUSIONIZER_CACHE_DIR, else
$XDG_CACHE_HOME/fusionizer, else ~/.cache/fusionizer), which the local platform shares for its
own environments. Every process it starts is stopped on exit.
"""

import argparse
import hashlib
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import svgplot  # noqa: E402

KS = (1, 5, 10, 50)
STYLES = (("call_function", "entrycall"), ("requests_session", "entrysession"))
CONCURRENCY = (1, 4, 16)
FUSED_GROUP = ["entrycall", "entrysession", "leaf"]


class Settings:
    """Sample counts and time bounds: every loop has a max count and a deadline."""

    def __init__(self, quick):
        self.quick = quick
        self.warmup = 10 if quick else 40
        self.rounds = 2 if quick else 3
        self.payoff_seconds = 1.0 if quick else 2.0
        self.calls_max = 100 if quick else 400
        self.calls_seconds = 0.5 if quick else 1.5
        self.load_seconds = 1.0 if quick else 3.0
        self.floor_seconds = 0.5 if quick else 1.5
        self.regroup_first = 5.0 if quick else 8.0
        self.regroup_gap = 5.0 if quick else 8.0
        self.regroup_tail = 3.0
        self.plan_runs = 2 if quick else 5
        self.start_timeout = 600.0


# ---------------------------------------------------------------------------------------------
# small helpers


def log(message):
    sys.stderr.write("[bench {0}] {1}\n".format(time.strftime("%H:%M:%S"), message))
    sys.stderr.flush()


def pct(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, int(round(p / 100.0 * len(sorted_values) + 0.5 - 1e-9)))
    return sorted_values[min(len(sorted_values), rank) - 1]


def summary_us(samples_ns):
    """p1..p99 (and mean, n) in µs of a list of nanosecond samples."""
    values = sorted(samples_ns)
    if not values:
        return {"n": 0}
    out = {"n": len(values), "mean": statistics.fmean(values) / 1000.0}
    for p in (1, 5, 25, 50, 75, 90, 95, 99):
        out["p{0}".format(p)] = pct(values, p) / 1000.0
    out["max"] = values[-1] / 1000.0
    return out


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def rss_kib(pid):
    try:
        with open("/proc/{0}/status".format(pid)) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pids):
    """User+system CPU seconds of these processes (all their threads), from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/{0}/stat".format(pid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / float(os.sysconf("SC_CLK_TCK"))


def children(pid):
    """Direct children of `pid`, from /proc/*/stat."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/{0}/stat".format(entry)) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def cache_dir():
    for name, suffix in (("FUSIONIZER_CACHE_DIR", ""), ("XDG_CACHE_HOME", "fusionizer")):
        value = os.environ.get(name)
        if value:
            return os.path.join(value, suffix) if suffix else value
    return os.path.join(os.path.expanduser("~"), ".cache", "fusionizer")


class Procs:
    """Every process the benchmark starts, stopped (TERM, then KILL) on exit."""

    def __init__(self):
        self.procs = []

    def start(self, argv, **kwargs):
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, proc, grace=10.0):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # the process group also holds children (workers) that outlived their parent
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def stop_all(self):
        for proc in reversed(self.procs):
            self.stop(proc, grace=5.0)
        self.procs = []


# ---------------------------------------------------------------------------------------------
# the HTTP client: one persistent keep-alive connection with TCP_NODELAY per client thread


class Client:
    def __init__(self, port, timeout=60.0):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def _connect(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn

    def request(self, method, path, body=None, headers=None):
        """(status, body bytes); status 0 when the connection failed (it is re-opened)."""
        try:
            if self.conn is None:
                self._connect()
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            return 0, b""

    def post_json(self, path, payload):
        return self.request("POST", path, json.dumps(payload).encode(),
                            {"Content-Type": "application/json"})

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def load_worker(args):
    """`run.py --load-worker`: THREADS client threads POST to PORT/PATH until the deadline.

    Starts at monotonic time START; prints JSON {"samples": [[t0_ns, latency_ns, status]...]}.
    """
    port, path, body, threads = args.port, args.path, args.body.encode(), args.threads
    results = [[] for _ in range(threads)]
    per_thread_max = max(1, args.max // threads)

    def run(slot):
        client = Client(port, timeout=30.0)
        out = results[slot]
        clock = time.monotonic_ns
        headers = {"Content-Type": "application/json"} if body else {}
        body_or_none = body or None
        wait = args.start - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        end = int(args.until * 1e9)
        while len(out) < per_thread_max:
            t0 = clock()
            if t0 >= end:
                break
            status, _ = client.request(args.method, path, body_or_none, headers)
            out.append((t0, clock() - t0, status))
        client.close()

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    json.dump({"samples": [s for r in results for s in r]}, sys.stdout)


def run_load(procs, port, path, body, concurrency, seconds, max_count, warmup=0.3, method="POST"):
    """Closed-loop load at `concurrency` from client processes (threads spread over at most two
    processes, so the client's GIL is not the bottleneck). Returns (samples, measured seconds):
    samples are (t0_ns, latency_ns, status) with t0 in the measured window; the count includes
    the warm-up's requests."""
    nproc = 1 if concurrency == 1 else 2
    start = time.monotonic() + 0.4
    until = start + warmup + seconds
    workers = []
    for i in range(nproc):
        threads = concurrency // nproc + (1 if i < concurrency % nproc else 0)
        argv = [sys.executable, os.path.abspath(__file__), "--load-worker", "--port", str(port),
                "--path", path, "--body", body, "--threads", str(threads), "--method", method,
                "--start", repr(start), "--until", repr(until), "--max", str(max_count // nproc)]
        workers.append(procs.start(argv, stdout=subprocess.PIPE))
    samples = []
    for w in workers:
        out, _ = w.communicate(timeout=seconds + warmup + 120)
        samples.extend(tuple(s) for s in json.loads(out)["samples"])
        procs.stop(w)
    begin = int((start + warmup) * 1e9)
    measured = [s for s in samples if s[0] >= begin]
    return measured, seconds, len(samples)


# ---------------------------------------------------------------------------------------------
# the load generator: an independent one (wrk) when present, else the Python client above


WRK_SCRIPT = r"""
wrk.method = "{method}"
{body}
done = function(summary, latency, requests)
  local e = summary.errors
  local p = {{}}
  for _, q in ipairs({{1, 5, 25, 50, 75, 90, 95, 99}}) do
    p[#p + 1] = string.format('"p%d": %d', q, latency:percentile(q))
  end
  io.write(string.format('FZJSON {{"requests": %d, "duration_us": %d, "failed": %d, ' ..
    '"mean": %.3f, "max": %d, %s}}\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout + e.status, latency.mean, latency.max,
    table.concat(p, ", ")))
end
"""


class Generator:
    """Closed-loop load at a given concurrency, summarised the same way whatever generates it.

    `wrk` (Debian's package: C, one event-loop thread, keep-alive connections, latency recorded
    in µs) is used when it is on PATH, so the client's own cost stays small and the same for
    every target; otherwise the built-in Python client (`run_load`), whose ~100 µs of client
    cost per request pushes every latency ratio toward 1. `--generator` chooses."""

    def __init__(self, choice, procs, work):
        self.procs = procs
        self.work = work
        wrk = shutil.which("wrk")
        if choice == "wrk" and wrk is None:
            raise SystemExit("--generator wrk: `wrk` is not on PATH (Debian: apt-get install wrk)")
        self.wrk = wrk if choice in ("auto", "wrk") else None
        if self.wrk:
            probe = subprocess.run([self.wrk, "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            first = probe.stdout.decode("utf-8", "replace").strip().splitlines()
            self.name = first[0].split(" [")[0] if first else "wrk"
        else:
            self.name = "the built-in Python client (http.client, keep-alive, TCP_NODELAY)"
        self.kind = "wrk" if self.wrk else "python"
        self.scripts = {}

    def _script(self, method, body):
        key = (method, body)
        if key not in self.scripts:
            lines = ""
            if body:
                lines = 'wrk.body = {0}\nwrk.headers["Content-Type"] = "application/json"'.format(
                    json.dumps(body))
            path = os.path.join(self.work, "wrk-{0}.lua".format(len(self.scripts)))
            with open(path, "w") as f:
                f.write(WRK_SCRIPT.format(method=method, body=lines))
            self.scripts[key] = path
        return self.scripts[key]

    def run(self, port, path, concurrency, seconds, body="", method="POST", max_count=100_000):
        """{"latency_us": {p1..p99, mean, max, n}, "requests", "failed", "throughput_rps",
        "seconds"} of `seconds` of load; a short warm-up on the same connections is excluded."""
        if self.wrk:
            return self._run_wrk(port, path, concurrency, seconds, body, method)
        samples, measured, total = run_load(self.procs, port, path, body, concurrency, seconds,
                                            max_count, method=method)
        ok = [s[1] for s in samples if s[2] == 200]
        return {"latency_us": summary_us(ok), "requests": total, "failed": len(samples) - len(ok),
                "throughput_rps": len(ok) / measured, "seconds": measured}

    def _run_wrk(self, port, path, concurrency, seconds, body, method):
        script = self._script(method, body)
        url = "http://127.0.0.1:{0}{1}".format(port, path)
        warm_up(port, path, body, method)
        # wrk takes whole seconds
        argv = [self.wrk, "-t1", "-c{0}".format(concurrency), "-d{0}s".format(max(1, int(round(seconds)))),
                "--timeout", "30s", "-s", script, url]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text = proc.stdout.decode("utf-8", "replace")
        found = [line[len("FZJSON "):] for line in text.splitlines() if line.startswith("FZJSON ")]
        if proc.returncode != 0 or not found:
            raise SystemExit("wrk failed ({0}): {1}".format(proc.returncode, text[-2000:]))
        raw = json.loads(found[-1])
        duration = raw["duration_us"] / 1e6
        latency = {k: float(v) for k, v in raw.items() if k.startswith("p")}
        latency.update(n=raw["requests"], mean=raw["mean"], max=float(raw["max"]))
        return {"latency_us": latency, "requests": raw["requests"], "failed": raw["failed"],
                "throughput_rps": (raw["requests"] - raw["failed"]) / duration, "seconds": duration}


def warm_up(port, path, body, method, count=30):
    """A few requests first, so that every process on the path is awake and has run it."""
    client = Client(port, timeout=30.0)
    headers = {"Content-Type": "application/json"} if body else {}
    for _ in range(count):
        client.request(method, path, body.encode() if body else None, headers)
    client.close()


FLOOR_BYTES = 256


def floor_round_trip(seconds, max_count):
    """The physical floor of the worker hop: p50 (and the rest) of a 256-byte round trip over a
    Unix stream socketpair between two Python processes (one echoes), in µs."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # the echoing peer
        parent.close()
        try:
            while True:
                data = child.recv(FLOOR_BYTES)
                if not data:
                    break
                while len(data) < FLOOR_BYTES:
                    more = child.recv(FLOOR_BYTES - len(data))
                    if not more:
                        os._exit(0)
                    data += more
                child.sendall(data)
        finally:
            os._exit(0)
    child.close()
    message = b"x" * FLOOR_BYTES
    clock = time.perf_counter_ns
    latencies = []
    try:
        for _ in range(200):  # warm-up
            parent.sendall(message)
            parent.recv(FLOOR_BYTES, socket.MSG_WAITALL)
        deadline = clock() + int(seconds * 1e9)
        while len(latencies) < max_count and clock() < deadline:
            start = clock()
            parent.sendall(message)
            parent.recv(FLOOR_BYTES, socket.MSG_WAITALL)
            latencies.append(clock() - start)
    finally:
        parent.close()
        os.waitpid(pid, 0)
    return summary_us(latencies)


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------------------------
# fusionizer and the projects


def build_binary():
    log("cargo build --release (may take a few minutes on a cold target/)")
    started = time.monotonic()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT, check=True,
        stdout=subprocess.PIPE).stdout)
    binary = os.path.join(meta["target_directory"], "release", "fusionizer")
    if not os.path.exists(binary):
        raise SystemExit("release binary not found at {0}".format(binary))
    return binary, time.monotonic() - started


def bench_venv(cache):
    """A virtualenv with the runtime requirements for the bare server (created once, cached)."""
    requirements = os.path.join(ROOT, "dispatcher", "requirements.txt")
    with open(requirements, "rb") as f:
        key = hashlib.sha256(f.read() + sys.version.encode()).hexdigest()[:12]
    venv = os.path.join(cache, "bench-venv-" + key)
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, ".complete")
    if not os.path.exists(marker):
        log("creating the bare server's virtualenv in {0}".format(venv))
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", requirements], check=True)
        open(marker, "w").close()
    return python


def write_project(root, name, tasks, phases):
    os.makedirs(root)
    lines = ["[project]", 'name = "{0}"'.format(name), 'platform = "local"', "", "[tasks]"]
    for task in tasks:
        lines.append('{0} = "tasks/{0}"'.format(task))
        src = os.path.join(HERE, "tasks", task)
        shutil.copytree(src, os.path.join(root, "tasks", task))
    for after, groups in phases:
        lines += ["", "[[phase]]", 'after = "{0}"'.format(after),
                  "groups = {0}".format(json.dumps(groups))]
    with open(os.path.join(root, "fusion.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return root


def plan_project(root, count):
    """A generated project of `count` trivial tasks, fused in fours from the second phase."""
    os.makedirs(root)
    names = ["t{0:04d}".format(i) for i in range(count)]
    lines = ["[project]", 'name = "benchplan"', 'platform = "local"', "", "[tasks]"]
    for name in names:
        directory = os.path.join(root, "tasks", name)
        os.makedirs(directory)
        with open(os.path.join(directory, "function.yaml"), "w") as f:
            f.write('apiVersion: "nuclio.io/v1beta1"\nkind: "NuclioFunction"\nmetadata:\n'
                    '  name: {0}\nspec:\n  runtime: "python:3.11"\n  handler: "main:handler"\n'
                    '  env:\n    - name: {1}_ID\n      value: "{0}"\n'.format(name, name.upper()))
        with open(os.path.join(directory, "main.py"), "w") as f:
            f.write("def handler(context, event):\n    return {0!r}\n".format(name))
        lines.append('{0} = "tasks/{0}"'.format(name))
    groups = [names[i:i + 4] for i in range(0, count, 4)]
    lines += ["", "[[phase]]", 'after = "0s"', "groups = {0}".format(json.dumps([[n] for n in names])),
              "", "[[phase]]", 'after = "1h"', "groups = {0}".format(json.dumps(groups))]
    with open(os.path.join(root, "fusion.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return root


class Serve:
    """One `fusionizer serve` process, its stderr lines timestamped (monotonic)."""

    def __init__(self, procs, binary, project, env, extra_args, log_path):
        self.lines = []
        self.log = open(log_path, "w")
        self.proc = procs.start(
            [binary, "-C", project, "serve", "--listen", "127.0.0.1:0"] + extra_args,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env)
        self.port = None
        self.started = time.monotonic()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            now = time.monotonic()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append((now, line))
            self.log.write("{0:.6f} {1}\n".format(now - self.started, line))
            self.log.flush()
            match = re.search(r"Listening on http://127\.0\.0\.1:(\d+)", line)
            if match and self.port is None:
                self.port = int(match.group(1))

    def line_time(self, pattern):
        for when, line in list(self.lines):
            if re.search(pattern, line):
                return when
        return None

    def tail(self, n=30):
        return "\n".join(line for _, line in self.lines[-n:])

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("fusionizer serve exited with {0}:\n{1}".format(
                    self.proc.returncode, self.tail()))
            if self.port is not None and self.line_time(r"^\s*Schedule\b") is not None:
                status, _ = Client(self.port, timeout=5).request("GET", "/-/health")
                if status == 200:
                    return time.monotonic() - self.started
            time.sleep(0.05)
        raise SystemExit("fusionizer serve was not ready within {0:.0f}s:\n{1}".format(
            timeout, self.tail()))

    def routes(self, client):
        status, body = client.request("GET", "/-/routes")
        if status != 200:
            return None
        return {task: r["function"] for task, r in json.loads(body)["routes"].items()}


# ---------------------------------------------------------------------------------------------
# the measurements


def measure_sequential(client, path, payload, warmup, max_count, seconds, check):
    """Concurrency 1, closed loop: latencies (ns) of up to max_count requests within seconds."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    for _ in range(warmup):
        status, data = client.request("POST", path, body, headers)
        check(status, data)
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    latencies, answers = [], []
    while len(latencies) < max_count and clock() < deadline:
        start = clock()
        status, data = client.request("POST", path, body, headers)
        latencies.append(clock() - start)
        answers.append(check(status, data))
    return latencies, answers


def median_summary(summaries):
    """Each statistic's median over rounds (rounds are summarised separately: an independent
    generator reports percentiles, not samples)."""
    keys = set.intersection(*(set(s) for s in summaries)) if summaries else set()
    return {k: statistics.median(s[k] for s in summaries) for k in sorted(keys)}


def spread(values):
    values = [v for v in values if v is not None]
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "rounds": values}


def payoff(settings, gen, fused, unfused):
    """End-to-end latency of the entry task for each style and K, fused vs unfused, at
    concurrency 1 with the load generator, rounds interleaved (the order flips every round);
    then each call's duration as the entry task timed it (a short sequential pass with the
    Python client, which reads the answers)."""
    servers = {"fused": fused, "unfused": unfused}
    clients = {"fused": Client(fused.port), "unfused": Client(unfused.port)}
    results = {}
    for style, task in STYLES:
        for k in KS:
            def check(status, data, k=k):
                if status != 200:
                    raise SystemExit("/{0} k={1} answered {2}: {3!r}".format(task, k, status, data[:300]))
                answer = json.loads(data)
                if answer.get("k") != k or len(answer.get("call_ns", ())) != k:
                    raise SystemExit("unexpected answer {0!r}".format(answer))
                return answer["call_ns"]

            body = json.dumps({"k": k})
            rounds = {m: [] for m in servers}
            for r in range(settings.rounds):
                for mode in (("fused", "unfused") if r % 2 == 0 else ("unfused", "fused")):
                    out = gen.run(servers[mode].port, "/" + task, 1, settings.payoff_seconds, body=body)
                    if out["failed"]:
                        raise SystemExit("/{0} k={1} ({2}): {3} failed requests".format(
                            task, k, mode, out["failed"]))
                    rounds[mode].append(out)
            entry = {"ratio_rounds": spread([
                u["latency_us"]["p50"] / f["latency_us"]["p50"]
                for f, u in zip(rounds["fused"], rounds["unfused"])])}
            for mode in servers:
                _, answers = measure_sequential(
                    clients[mode], "/" + task, {"k": k}, settings.warmup, settings.calls_max,
                    settings.calls_seconds, check)
                calls = [c for answer in answers for c in answer]
                entry[mode] = {"latency_us": median_summary([o["latency_us"] for o in rounds[mode]]),
                               "p50_rounds": [o["latency_us"]["p50"] for o in rounds[mode]],
                               "call_us": summary_us(calls),
                               "first_call_us": summary_us([a[0] for a in answers]),
                               "raw_calls_ns": calls, "raw_first_calls_ns": [a[0] for a in answers]}
            entry["ratio_p50"] = entry["ratio_rounds"]["median"]
            results["{0}/k{1}".format(style, k)] = entry
            log("payoff {0:<16} K={1:<3} fused p50 {2:9.0f} µs  unfused p50 {3:9.0f} µs  ratio {4:6.1f}x"
                " ({5:.1f}-{6:.1f})  per call {7:7.1f} vs {8:7.1f} µs, first call fused {9:.1f} µs"
                "  [load {10}]".format(
                    style, k, entry["fused"]["latency_us"]["p50"], entry["unfused"]["latency_us"]["p50"],
                    entry["ratio_p50"], entry["ratio_rounds"]["min"], entry["ratio_rounds"]["max"],
                    entry["fused"]["call_us"]["p50"], entry["unfused"]["call_us"]["p50"],
                    entry["fused"]["first_call_us"]["p50"], " ".join(map(str, loadavg()))))
    for c in clients.values():
        c.close()
    for style, _ in STYLES:
        results["{0}/slope".format(style)] = call_slope(results, style)
    return results


def call_slope(payoff_results, style):
    """One in-process call through serve, as the issue defines it: the slope of the fused
    entry's p50 between the smallest and the largest K, per round (the rounds of the two K
    were measured in the same order), as the median over rounds with its range."""
    low, high = KS[0], KS[-1]
    lows = payoff_results["{0}/k{1}".format(style, low)]["fused"]["p50_rounds"]
    highs = payoff_results["{0}/k{1}".format(style, high)]["fused"]["p50_rounds"]
    return spread([(h - l) / (high - low) for l, h in zip(lows, highs)])


def proxy_cost(settings, gen, serve_port, bare_port, serve_pid, bare_pid):
    """The trivial task through serve vs the bare server, and serve's own `/-/health`, and the
    floor (a Python socketpair round trip), rotated in rounds; then throughput and CPU per
    request at concurrency 4 and 16, serve and bare alternating."""
    workers = children(serve_pid)
    rounds = []
    for r in range(settings.rounds):
        row = {"loadavg": loadavg()}
        order = ["health", "serve", "bare", "floor"]
        order = order[r % 4:] + order[:r % 4]
        for target in order:
            if target == "floor":
                row["floor"] = floor_round_trip(settings.floor_seconds, 200_000)
            elif target == "health":
                row["health"] = gen.run(serve_port, "/-/health", 1, settings.load_seconds, method="GET")
            else:
                row[target] = gen.run(serve_port if target == "serve" else bare_port, "/hello", 1,
                                      settings.load_seconds, body="{}")
        row["hop_us"] = row["serve"]["latency_us"]["p50"] - row["health"]["latency_us"]["p50"]
        row["hop_ratio"] = row["hop_us"] / row["floor"]["p50"]
        row["latency_ratio_p50"] = row["serve"]["latency_us"]["p50"] / row["bare"]["latency_us"]["p50"]
        for concurrency in CONCURRENCY[1:]:
            cell = {}
            for target in (("bare", "serve") if r % 2 == 0 else ("serve", "bare")):
                port = serve_port if target == "serve" else bare_port
                before = (cpu_seconds([serve_pid]), cpu_seconds(workers), cpu_seconds([bare_pid]))
                out = gen.run(port, "/hello", concurrency, settings.load_seconds, body="{}")
                after = (cpu_seconds([serve_pid]), cpu_seconds(workers), cpu_seconds([bare_pid]))
                n = max(1, out["requests"])
                if target == "serve":
                    out["cpu_us_per_request"] = {"proxy": (after[0] - before[0]) * 1e6 / n,
                                                 "workers": (after[1] - before[1]) * 1e6 / n}
                else:
                    out["cpu_us_per_request"] = {"server": (after[2] - before[2]) * 1e6 / n}
                cell[target] = out
            cell["throughput_ratio"] = cell["serve"]["throughput_rps"] / cell["bare"]["throughput_rps"]
            row["c{0}".format(concurrency)] = cell
        rounds.append(row)
        c4 = row["c4"]
        log("proxy round {0} [load {1}]: c=1 serve p50 {2:.0f} µs, bare {3:.0f} µs ({4:.2f}x), health "
            "{5:.0f} µs, hop {6:.0f} µs = {7:.2f}x the floor ({8:.0f} µs); c=4 throughput {9:.2f}x, "
            "CPU/request serve {10:.0f} + workers {11:.0f} µs, bare {12:.0f} µs".format(
                r + 1, " ".join(map(str, row["loadavg"])), row["serve"]["latency_us"]["p50"],
                row["bare"]["latency_us"]["p50"], row["latency_ratio_p50"],
                row["health"]["latency_us"]["p50"], row["hop_us"], row["hop_ratio"], row["floor"]["p50"],
                c4["throughput_ratio"], c4["serve"]["cpu_us_per_request"]["proxy"],
                c4["serve"]["cpu_us_per_request"]["workers"], c4["bare"]["cpu_us_per_request"]["server"]))
    results = {"rounds": rounds,
               "hop_us": spread([row["hop_us"] for row in rounds]),
               "hop_ratio": spread([row["hop_ratio"] for row in rounds]),
               "floor_us": median_summary([row["floor"] for row in rounds]),
               "health_us": median_summary([row["health"]["latency_us"] for row in rounds])}
    for concurrency in CONCURRENCY:
        key = "c{0}".format(concurrency)
        cells = [{"serve": row["serve"], "bare": row["bare"]} if concurrency == 1 else row[key]
                 for row in rounds]
        entry = {}
        for target in ("serve", "bare"):
            outs = [cell[target] for cell in cells]
            entry[target] = {"latency_us": median_summary([o["latency_us"] for o in outs]),
                             "throughput_rps": statistics.median(o["throughput_rps"] for o in outs),
                             "failed": sum(o["failed"] for o in outs)}
            if "cpu_us_per_request" in outs[0]:
                entry[target]["cpu_us_per_request"] = {
                    k: statistics.median(o["cpu_us_per_request"][k] for o in outs)
                    for k in outs[0]["cpu_us_per_request"]}
        entry["latency_ratio_p50"] = spread([c["serve"]["latency_us"]["p50"] / c["bare"]["latency_us"]["p50"]
                                             for c in cells])
        entry["latency_ratio_p99"] = spread([c["serve"]["latency_us"]["p99"] / c["bare"]["latency_us"]["p99"]
                                             for c in cells])
        entry["throughput_ratio"] = spread([c["serve"]["throughput_rps"] / c["bare"]["throughput_rps"]
                                            for c in cells])
        results[key] = entry
    return results


def regroup(settings, procs, binary, work, env):
    """Serve a project whose schedule fuses entrycall+leaf, then splits them again, under load;
    time each switch from its due time (serve's schedule origin + offset) to `/-/routes` showing
    it, and record every client request across both switches."""
    first, gap = settings.regroup_first, settings.regroup_gap
    project = write_project(
        os.path.join(work, "regroup"), "benchregroup", ["entrycall", "leaf"],
        [("0s", [["entrycall"], ["leaf"]]),
         ("{0}ms".format(int(first * 1000)), [["entrycall", "leaf"]]),
         ("{0}ms".format(int((first + gap) * 1000)), [["entrycall"], ["leaf"]])])
    serve = Serve(procs, binary, project, dict(env, FUSIONIZER_LOG="fusionizer=info"), [],
                  os.path.join(work, "serve-regroup.log"))
    try:
        serve.wait_ready(settings.start_timeout)
        # phase offsets count from when serve starts listening (`src/serve/mod.rs`), which it
        # says at once; the schedule it prints only after the start phase is deployed
        origin = serve.line_time(r"Listening on http://")
        dues = [origin + first, origin + first + gap]
        poller = Client(serve.port)
        before = serve.routes(poller)
        # load through both switches from another process; poll routes meanwhile
        end = dues[1] + settings.regroup_tail
        load = {}

        def drive():
            load["samples"], _, _ = run_load(procs, serve.port, "/entrycall", '{"k": 1}', 2,
                                          end - time.monotonic() - 0.7, 1_000_000, warmup=0.3)

        driver = threading.Thread(target=drive)
        driver.start()
        observed = []  # (t, function serving leaf)
        current = before.get("leaf")
        while time.monotonic() < end:
            routes = serve.routes(poller)
            now = time.monotonic()
            if routes is not None and routes.get("leaf") != current:
                current = routes.get("leaf")
                observed.append((now, current))
            time.sleep(0.005)
        driver.join()
        poller.close()
        samples = load["samples"]
        switches = []
        for i, due in enumerate(dues):
            upper = dues[i + 1] - 0.5 if i + 1 < len(dues) else end
            seen = [t for t, _ in observed if due - 0.5 <= t < upper]
            switches.append({"phase": i + 2, "switch_s": (seen[0] - due) if seen else None})
        # the windows from each due time to 1 s after its switch, vs the rest
        def in_window(t0):
            t = t0 / 1e9
            for due, sw in zip(dues, switches):
                limit = due + (sw["switch_s"] or settings.regroup_gap) + 1.0
                if due - 0.2 <= t <= limit:
                    return True
            return False

        during = [s for s in samples if in_window(s[0])]
        steady = [s for s in samples if not in_window(s[0])]
        failures = [s for s in samples if s[2] != 200]
        serve_logged = [line for _, line in serve.lines if "in force" in line]
        result = {
            "routes_before": before, "observed": [(t - origin, f) for t, f in observed],
            "switches": switches, "requests": len(samples), "failed": len(failures),
            "failed_statuses": sorted({s[2] for s in failures}),
            "during_switch_us": summary_us([s[1] for s in during]),
            "steady_us": summary_us([s[1] for s in steady]),
            "serve_log": serve_logged,
        }
        log("regroup: switches {0}, {1} requests, {2} failed, p99 during {3:.0f} µs vs steady {4:.0f} µs".format(
            ["{0:.3f}s".format(s["switch_s"]) if s["switch_s"] is not None else "never" for s in switches],
            len(samples), len(failures), result["during_switch_us"].get("p99", float("nan")),
            result["steady_us"].get("p99", float("nan"))))
        return result
    finally:
        procs.stop(serve.proc)


def footprint(serve):
    serve_kib = rss_kib(serve.proc.pid)
    workers = {pid: rss_kib(pid) for pid in children(serve.proc.pid)}
    workers = {pid: kib for pid, kib in workers.items() if kib}
    return {"serve_rss_kib": serve_kib, "worker_rss_kib": sorted(workers.values()),
            "workers": len(workers)}


def plan_time(settings, binary, work, env, count):
    project = plan_project(os.path.join(work, "plan{0}".format(count)), count)
    help_text = subprocess.run([binary, "--help"], stdout=subprocess.PIPE, env=env).stdout.decode()
    command = "plan" if re.search(r"^\s+plan\s", help_text, re.M) else "build"
    argv = [binary, "-C", project, command] + (["--phase", "2"] if command == "plan" else
                                              ["--phase", "2", "--out", os.path.join(work, "plan-out")])
    times = []
    for _ in range(settings.plan_runs + 1):
        started = time.perf_counter()
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        elapsed = time.perf_counter() - started
        if proc.returncode not in (0, 2):
            raise SystemExit("`fusionizer {0}` over {1} tasks failed ({2}):\n{3}".format(
                command, count, proc.returncode, proc.stderr.decode()[-2000:]))
        times.append(elapsed)
    times = times[1:]  # the first run warms the page cache
    log("{0} over {1} tasks: median {2:.0f} ms".format(command, count, statistics.median(times) * 1000))
    return {"command": command, "tasks": count, "wall_ms": [t * 1000 for t in times],
            "median_ms": statistics.median(times) * 1000}


# ---------------------------------------------------------------------------------------------
# the report


def ratio_text(s, digits=2):
    """`1.05× (0.98–1.12)`: the median over rounds and its spread."""
    return "{0:.{2}f}× ({1})".format(s["median"], "–".join("{0:.{1}f}".format(v, digits) for v in (s["min"], s["max"])),
                                     digits)


def targets(results):
    """(target, measured, met) for every target of the benchmark, in one run."""
    out = []
    px = results["proxy"]
    floor = px["floor_us"]["p50"]
    out.append(("Worker hop (serve `/hello` p50 − serve `/-/health` p50, c=1) ≤ 2× a Python Unix-socket "
                "round trip ({0:.0f} µs)".format(floor),
                "{0:.0f} µs = {1}".format(px["hop_us"]["median"], ratio_text(px["hop_ratio"])),
                px["hop_ratio"]["median"] <= 2.0))
    c4 = px["c4"]
    workers = c4["serve"]["cpu_us_per_request"]["workers"]
    out.append(("Worker CPU per trivial event (c=4) ≤ 45 µs", "{0:.0f} µs".format(workers), workers <= 45))
    proxy = c4["serve"]["cpu_us_per_request"]["proxy"]
    out.append(("serve CPU per proxied request (c=4) ≤ 30 µs", "{0:.0f} µs".format(proxy), proxy <= 30))
    c1 = px["c1"]
    out.append(("Proxy p50 (c=1) ≤ 1.0× the bare Python server", ratio_text(c1["latency_ratio_p50"]),
                c1["latency_ratio_p50"]["median"] <= 1.0))
    out.append(("Proxy throughput (c=4, 2 workers) ≥ 1.5× the bare Python server",
                ratio_text(c4["throughput_ratio"]), c4["throughput_ratio"]["median"] >= 1.5))
    for style, _ in STYLES:
        e = results["payoff"]["{0}/k10".format(style)]
        out.append(("Fusion payoff, K=10, {0}: unfused/fused ≥ 20× (p50)".format(style),
                    ratio_text(e["ratio_rounds"], 1), e["ratio_p50"] >= 20))
    for style, limit in (("call_function", 10), ("requests_session", 40)):
        slope = results["payoff"]["{0}/slope".format(style)]
        out.append(("One in-process {0} call ≤ {1} µs (slope of the fused p50 over K={2}..{3}, "
                    "through serve)".format(style, limit, KS[0], KS[-1]),
                    "{0:.1f} µs ({1:.1f}–{2:.1f})".format(slope["median"], slope["min"], slope["max"]),
                    slope["median"] <= limit))
    for style, _ in STYLES:
        first = results["calls"][style]["fused_first"]["p50"]
        every = results["calls"][style]["fused"]["p50"]
        out.append(("No first-call penalty, {0}: the first call of an event ≤ a later one + 2 µs "
                    "(p50, timed in the handler)".format(style),
                    "first {0:.1f} µs, every call {1:.1f} µs".format(first, every), first <= every + 2))
    rg = results["regroup"]
    out.append(("Regroup under load: 0 failed requests", "{0} of {1}".format(rg["failed"], rg["requests"]),
                rg["failed"] == 0))
    worst = [s["switch_s"] for s in rg["switches"]]
    ok = all(s is not None and s <= 2.0 for s in worst)
    out.append(("Regroup: routes switch within 2 s of the phase time",
                ", ".join("{0:.2f} s".format(s) if s is not None else "never" for s in worst), ok))
    mib = results["footprint"]["serve_rss_kib"] / 1024.0
    out.append(("serve RSS (without workers) < 30 MiB", "{0:.1f} MiB".format(mib), mib < 30))
    plan = results["plan"]
    out.append(("`{0}` over {1} tasks < 100 ms".format(plan["command"], plan["tasks"]),
                "{0:.0f} ms".format(plan["median_ms"]), plan["median_ms"] < 100))
    return out


def fmt(value, digits=0):
    if value is None:
        return "–"
    return "{0:,.{1}f}".format(value, digits)


def render_markdown(results):
    m = results["machine"]
    lines = [
        "# fusionizer benchmark results", "",
        "`python3 examples/bench/run.py{0}` on {1}: {2} cores, {3}; Linux {4}, Python {5}; "
        "load average {6} at start, {7} at end{8}.".format(
            " --quick" if results["quick"] else "", results["date"], m["cores"], m["cpu"],
            m["kernel"], m["python"], " / ".join(map(str, m["loadavg_start"])),
            " / ".join(map(str, m["loadavg_end"])), "" if m["idle"] else " (a shared, busy machine)"),
        "Local platform, loopback only. Load generator: **{0}**, for every latency and throughput "
        "figure (serve, the bare server and `/-/health` alike); the in-group call cost is timed "
        "inside the entry handler. All latencies in µs. Every ratio is measured side by side: "
        "the targets alternate within each of {1} rounds, and a ratio is the median over the "
        "rounds with its range (min–max) in brackets.".format(results["generator"], results["rounds"]), "",
        "## Targets", "",
        "| Target | Measured | Result |", "|---|---|---|",
    ]
    for name, measured, ok in results["targets"]:
        lines.append("| {0} | {1} | {2} |".format(name, measured, "met" if ok else "**not met**"))
    px = results["proxy"]
    lines += ["", "## The worker hop against its floor (concurrency 1, per round)", "",
              "| Round | load average | serve `/hello` p50 | serve `/-/health` p50 | hop | Python socketpair "
              "round trip p50 | hop / floor | bare p50 | serve / bare |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for i, row in enumerate(px["rounds"]):
        lines.append("| {0} | {1} | {2} | {3} | {4} | {5} | {6:.2f}× | {7} | {8:.2f}× |".format(
            i + 1, " / ".join(map(str, row["loadavg"])), fmt(row["serve"]["latency_us"]["p50"]),
            fmt(row["health"]["latency_us"]["p50"]), fmt(row["hop_us"]), fmt(row["floor"]["p50"], 1),
            row["hop_ratio"], fmt(row["bare"]["latency_us"]["p50"]), row["latency_ratio_p50"]))
    lines += ["", "## Proxy cost: trivial task, `fusionizer serve` (2 workers) vs bare Python "
              "`ThreadingHTTPServer` (medians over rounds)", "",
              "| Concurrency | serve p50 | serve p99 | serve req/s | bare p50 | bare p99 | bare req/s "
              "| p50 ratio | throughput ratio | CPU µs/request: serve proxy + workers, bare |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in CONCURRENCY:
        e = px["c{0}".format(c)]
        s, b = e["serve"], e["bare"]
        cpu = "–"
        if "cpu_us_per_request" in s:
            cpu = "{0:.0f} + {1:.0f}, {2:.0f}".format(
                s["cpu_us_per_request"]["proxy"], s["cpu_us_per_request"]["workers"],
                b["cpu_us_per_request"]["server"])
        lines.append("| {0} | {1} | {2} | {3} | {4} | {5} | {6} | {7} | {8} | {9} |".format(
            c, fmt(s["latency_us"]["p50"]), fmt(s["latency_us"]["p99"]), fmt(s["throughput_rps"]),
            fmt(b["latency_us"]["p50"]), fmt(b["latency_us"]["p99"]), fmt(b["throughput_rps"]),
            ratio_text(e["latency_ratio_p50"]), ratio_text(e["throughput_ratio"]), cpu))
    lines += ["", "## Fusion payoff: entry task making K synchronous calls to a sibling (concurrency 1)", "",
              "| Style | K | fused p50 | p90 | p99 | unfused p50 | p90 | p99 | unfused/fused (p50) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for style, _ in STYLES:
        for k in KS:
            e = results["payoff"]["{0}/k{1}".format(style, k)]
            f, u = e["fused"]["latency_us"], e["unfused"]["latency_us"]
            lines.append("| {0} | {1} | {2} | {3} | {4} | {5} | {6} | {7} | **{8}** |".format(
                style, k, fmt(f["p50"]), fmt(f["p90"]), fmt(f["p99"]), fmt(u["p50"]),
                fmt(u["p90"]), fmt(u["p99"]), ratio_text(e["ratio_rounds"], 1)))
    lines += ["", "## In-group call cost (timed inside the entry handler, all K pooled)", "",
              "| Style | fused call p50 | fused first call of an event p50 | p99 | remote call p50 | p99 "
              "| remote/fused |", "|---|---:|---:|---:|---:|---:|---:|"]
    for style, _ in STYLES:
        f, r = results["calls"][style]["fused"], results["calls"][style]["remote"]
        first = results["calls"][style]["fused_first"]
        lines.append("| {0} | {1} | {2} | {3} | {4} | {5} | {6:.0f}× |".format(
            style, fmt(f["p50"], 1), fmt(first["p50"], 1), fmt(f["p99"], 1), fmt(r["p50"], 1),
            fmt(r["p99"], 1), r["p50"] / f["p50"]))
    rg = results["regroup"]
    lines += ["", "## Regroup under load (entry K=1 at concurrency 2, Python client; fuse, then split again)", "",
              "| Switch | due → routes switched | requests | failed | p50 during | p99 during | max during "
              "| p50 steady | p99 steady |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    d, s = rg["during_switch_us"], rg["steady_us"]
    names = ["alone → fused", "fused → alone"]
    for i, sw in enumerate(rg["switches"]):
        lines.append("| {0} | {1} | {2} | {3} | {4} | {5} | {6} | {7} | {8} |".format(
            names[i], "{0:.3f} s".format(sw["switch_s"]) if sw["switch_s"] is not None else "never",
            rg["requests"] if i == 0 else "″", rg["failed"] if i == 0 else "″",
            fmt(d.get("p50")), fmt(d.get("p99")), fmt(d.get("max")), fmt(s.get("p50")), fmt(s.get("p99"))))
    fp = results["footprint"]
    w = fp["idle"]["worker_rss_kib"]
    lines += ["", "## Footprint", "",
              "| Measure | Value |", "|---|---:|",
              "| serve RSS, idle after start (serve process only) | {0:.1f} MiB |".format(fp["idle"]["serve_rss_kib"] / 1024),
              "| serve RSS after the proxy benchmark | {0:.1f} MiB |".format(fp["loaded"]["serve_rss_kib"] / 1024),
              "| worker RSS (each, {0} workers) | {1:.1f}–{2:.1f} MiB, mean {3:.1f} MiB |".format(
                  len(w), min(w) / 1024, max(w) / 1024, statistics.fmean(w) / 1024) if w else
              "| worker RSS | – |"]
    for plan in results["plans"]:
        lines.append("| `fusionizer {0}` over {1} tasks (median of {2}) | {3:.0f} ms ({4:.2f} ms per task) |".format(
            plan["command"], plan["tasks"], len(plan["wall_ms"]), plan["median_ms"],
            plan["median_ms"] / plan["tasks"]))
    lines.append("| `cargo build --release` in this run (near 0 when already up to date) | {0} |".format(
        "not run (`--binary`)" if results["build_seconds"] is None else "{0:.0f} s".format(results["build_seconds"])))
    lines += ["", "The original nuclio_fusionizer's only published number is a median of 33 ms per "
              "fused invocation (one sibling call, 100 sequential POSTs through kubectl port-forward "
              "on minikube). Here a fused entry task with one sibling call answers in a median of "
              "{0} µs ({1}) and {2} µs ({3}) end to end on the local platform. The setups differ "
              "(no Kubernetes, no port-forward), so this shows the floor of this design, "
              "not a like-for-like comparison.".format(
                  fmt(results["payoff"]["call_function/k1"]["fused"]["latency_us"]["p50"]), "call_function",
                  fmt(results["payoff"]["requests_session/k1"]["fused"]["latency_us"]["p50"]), "requests_session"), ""]
    return "\n".join(lines)


README_BEGIN = "<!-- bench results: begin (written by examples/bench/run.py --update-docs) -->"
README_END = "<!-- bench results: end -->"


def update_readme(markdown):
    """Puts this run's results (less their title, headings one level down) between the markers
    of docs/performance.md ("Benchmarks")."""
    path = os.path.join(ROOT, "docs", "performance.md")
    with open(path) as f:
        text = f.read()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        raise SystemExit("docs/performance.md has no bench markers ({0} ... {1})".format(README_BEGIN, README_END))
    body = markdown.split("\n", 2)[2].strip("\n")
    body = re.sub(r"^## ", "### ", body, flags=re.M)
    text = text[:begin + len(README_BEGIN)] + "\n" + body + "\n" + text[end:]
    with open(path, "w") as f:
        f.write(text)


HEADLINE_BEGIN = "<!-- bench headline: begin (written by examples/bench/run.py --update-docs) -->"
HEADLINE_END = "<!-- bench headline: end -->"


def headline(results):
    """The README's performance sentence, from this run: the payoff at K=10 in both styles with
    its range over rounds, and the load average the run saw."""
    m = results["machine"]
    k10 = {style: results["payoff"]["{0}/k10".format(style)]["ratio_rounds"] for style, _ in STYLES}
    loads = [row["loadavg"][0] for row in results["proxy"]["rounds"]] + [m["loadavg_start"][0], m["loadavg_end"][0]]
    return ("Fusing pays where tasks call each other: an entry task making 10 synchronous calls to a "
            "sibling answers **{0:.1f}× faster fused** with `context.platform.call_function` "
            "({1:.1f}–{2:.1f}× over {3} rounds) and **{4:.1f}×** with `requests_session` "
            "({5:.1f}–{6:.1f}×) than with every call crossing the proxy (p50, local platform, "
            "{7} cores, load average {8:.1f}–{9:.1f}; `examples/bench/run.py` of {10}).").format(
        k10["call_function"]["median"], k10["call_function"]["min"], k10["call_function"]["max"],
        len(k10["call_function"]["rounds"]), k10["requests_session"]["median"],
        k10["requests_session"]["min"], k10["requests_session"]["max"], m["cores"],
        min(loads), max(loads), results["date"][:10])


def update_headline(results):
    """Puts `headline(results)` between the markers of README.md's "Performance"."""
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    begin, end = text.find(HEADLINE_BEGIN), text.find(HEADLINE_END)
    if begin < 0 or end < begin:
        raise SystemExit("README.md has no headline markers ({0} ... {1})".format(HEADLINE_BEGIN, HEADLINE_END))
    text = text[:begin + len(HEADLINE_BEGIN)] + "\n" + headline(results) + "\n" + text[end:]
    with open(path, "w") as f:
        f.write(text)


def strip_raw(value):
    if isinstance(value, dict):
        return {k: strip_raw(v) for k, v in value.items() if not k.startswith("raw_")}
    return value


# ---------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples: about 1-2 minutes")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="output directory")
    parser.add_argument("--binary", help="use this fusionizer binary instead of building one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects and logs")
    parser.add_argument("--update-docs", "--update-readme", dest="update_readme", action="store_true",
                        help="also replace the results in docs/performance.md (between its bench markers) "
                             "with this run's")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator: wrk when on PATH (auto), or the built-in Python client")
    parser.add_argument("--load-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="POST", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--until", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--max", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_worker:
        return load_worker(args)

    settings = Settings(args.quick)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs = Procs()
    work = tempfile.mkdtemp(prefix="fusionizer-bench-")
    started = time.monotonic()
    try:
        results = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "quick": settings.quick,
                   "machine": machine(), "rounds": settings.rounds}
        gen = Generator(args.generator, procs, work)
        results["generator"] = gen.name
        log("load generator: {0}".format(gen.name))
        log("{0} cores ({1}), load average {2}".format(
            results["machine"]["cores"], results["machine"]["cpu"], results["machine"]["loadavg_start"]))
        if args.binary:
            binary, results["build_seconds"] = os.path.abspath(args.binary), None
        else:
            binary, results["build_seconds"] = build_binary()
        cache = cache_dir()
        os.makedirs(cache, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FUSIONIZER_", "NUCTL_"))}
        env.update(FUSIONIZER_CACHE_DIR=cache, NO_COLOR="1")
        python = bench_venv(cache)

        tasks = ["entrycall", "entrysession", "leaf", "hello"]
        phases = [("0s", [[t] for t in tasks]), ("1h", [FUSED_GROUP])]
        unfused_dir = write_project(os.path.join(work, "unfused"), "benchunfused", tasks, phases)
        fused_dir = write_project(os.path.join(work, "fused"), "benchfused", tasks, phases)

        # the first serve also builds (or reuses) the cached environment
        unfused = Serve(procs, binary, unfused_dir, env, ["--phase", "1", "--no-schedule"],
                        os.path.join(work, "serve-unfused.log"))
        log("serve (every task alone) ready in {0:.1f}s".format(unfused.wait_ready(settings.start_timeout)))
        fused = Serve(procs, binary, fused_dir, env, ["--phase", "2", "--no-schedule"],
                      os.path.join(work, "serve-fused.log"))
        log("serve (entry tasks and leaf fused) ready in {0:.1f}s".format(fused.wait_ready(settings.start_timeout)))
        fp_idle = footprint(unfused)

        bare = procs.start([python, os.path.join(HERE, "bare_server.py"), os.path.join(unfused_dir, "tasks", "hello")],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           env=dict(env, PYTHONPATH=os.path.join(ROOT, "dispatcher")))
        bare_port = int(bare.stdout.readline())

        results["payoff"] = payoff(settings, gen, fused, unfused)

        def pooled(style, mode, key):
            return summary_us([c for k in KS for c in results["payoff"]["{0}/k{1}".format(style, k)][mode][key]])

        results["calls"] = {
            style: {"fused": pooled(style, "fused", "raw_calls_ns"),
                    "fused_first": pooled(style, "fused", "raw_first_calls_ns"),
                    "remote": pooled(style, "unfused", "raw_calls_ns")}
            for style, _ in STYLES}
        procs.stop(fused.proc)

        results["proxy"] = proxy_cost(settings, gen, unfused.port, bare_port, unfused.proc.pid, bare.pid)
        results["footprint"] = {"idle": fp_idle, "loaded": footprint(unfused)}
        results["footprint"]["serve_rss_kib"] = fp_idle["serve_rss_kib"]
        log("footprint: serve {0:.1f} MiB idle, {1:.1f} MiB loaded; workers {2}".format(
            fp_idle["serve_rss_kib"] / 1024, results["footprint"]["loaded"]["serve_rss_kib"] / 1024,
            ["{0:.1f} MiB".format(k / 1024) for k in fp_idle["worker_rss_kib"]]))
        procs.stop(bare)
        procs.stop(unfused.proc)

        results["regroup"] = regroup(settings, procs, binary, work, env)
        results["plans"] = [plan_time(settings, binary, work, env, n) for n in (200, 2000)]
        results["plan"] = results["plans"][0]

        results["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        results["machine"]["idle"] = max(results["machine"]["loadavg_end"][0],
                                         results["machine"]["loadavg_start"][0]) < 0.5 * (os.cpu_count() or 1)
        results["elapsed_s"] = time.monotonic() - started
        results["targets"] = targets(results)

        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write(render_markdown(results))
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(strip_raw(dict(results, targets=[
                {"target": n, "measured": m, "met": ok} for n, m, ok in results["targets"]])),
                f, indent=1, sort_keys=True)
            f.write("\n")
        with open(os.path.join(args.out, "latency.svg"), "w") as f:
            f.write(svgplot.render(results, KS, STYLES, CONCURRENCY))
        if args.update_readme:
            update_readme(render_markdown(results))
            update_headline(results)
            log("updated the results in docs/performance.md")
        log("every target, measured in this run with {0}:".format(gen.name))
        for name, measured, ok in results["targets"]:
            print("{0:8} {1}: {2}".format("met" if ok else "NOT MET", name, measured), flush=True)
        small, large = results["plans"]
        print("{0:8} `{1}` over {2} tasks: {3:.0f} ms, {4:.2f} ms per task ({5:.2f} over {6})".format(
            "(scale)", large["command"], large["tasks"], large["median_ms"],
            large["median_ms"] / large["tasks"], small["median_ms"] / small["tasks"], small["tasks"]),
            flush=True)
        log("done in {0:.0f}s; wrote {1}/results.md, results.json, latency.svg".format(
            results["elapsed_s"], args.out))
    finally:
        procs.stop_all()
        if args.keep:
            log("kept {0}".format(work))
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
