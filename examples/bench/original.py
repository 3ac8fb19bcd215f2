#!/usr/bin/env python3
"""Against the original project: fusionizer serve vs marvin-steinke/nuclio_fusionizer, unmodified,
on the original's own benchmark tasks, side by side in one run.

    git clone https://github.com/marvin-steinke/nuclio_fusionizer ORIGINAL
    python3 examples/bench/original.py --original ORIGINAL [--python PYTHON3.12] [--rounds N]
                                       [--seconds S] [--binary PATH] [--out DIR] [--keep]

Not part of CI or scripts/test; loopback only; needs `wrk` (Debian: apt-get install wrk), a C
compiler for the fake nuctl (without one a shell script stands in, which costs more), a Python
3.12 or later for the original (its f-strings nest quotes), a Rust toolchain (it builds
`fusionizer` with `cargo build --release` unless --binary is given) and PyPI once. Nothing of the
original is copied into this repository: it runs from the checkout given with --original.

The original's side (all its code unchanged, run from the checkout):

- its API server (`nuclio_fusionizer.main.main()`: FastAPI under uvicorn, its Mapper, Fuser and
  StaticOptimizer) in a virtualenv with its requirements.txt pins, created once under the
  fusionizer cache dir. The only change is where uvicorn listens: `ApiServer.run` binds
  0.0.0.0:8000, this binds 127.0.0.1 on a free port (uvicorn.run is wrapped; same app, same
  uvicorn defaults, its access log included);
- a fake `nuctl` first on its PATH: `deploy` and `delete` do nothing, `get function NAME
  --output json` prints a fixed, trimmed function document (in the layout nuclio's `nuctl get`
  renders) whose `status.internalInvocationUrls` points at the stand-in below. The original runs
  `nuctl get function` before every invocation (`Nuctl.invoke`); with the fake, that costs one
  fork/exec of a tiny static C program, the cheapest such call can be;
- its two bench tasks, `bench/entrytask` and `bench/additiontask`, uploaded through its API
  (`PUT /<task>` with a zip, as its `bench/run_bench` does) and fused by its own StaticOptimizer
  with the groups of its `bench/config.json` (sooner than its 120 s: --fuse-after), so its own
  Fuser writes the fused function (handler.py + dispatcher.py);
- the stand-in for Nuclio: that fused function's `handler` behind `bare_server.py`'s server (a
  `ThreadingHTTPServer`, HTTP/1.1 keep-alive, TCP_NODELAY, building the `nuclio_sdk.Event` and
  encoding the result by Nuclio's wrapper's rules, as fusionizer's worker does). Nuclio's own
  processor (HTTP trigger in Go, msgpack over a Unix socket to its Python wrapper) does not run
  without Nuclio; the stand-in is cheaper than it, which favours the original. It is measured
  alone with a trivial handler (`tasks/hello`) so its cost can be subtracted.

fusionizer's side: `fusionizer serve` (release build, local platform) on a temporary project
with the same two task directories copied from the checkout, fused in one function; and, for
context, every task alone (that serve listens on 127.0.0.1:8000, because entrytask hard-codes
port 8000; skipped when that port is taken).

Measured with `wrk` at concurrency 1 (run.py's generator), `POST /entrytask` with the body the
original's run_bench sends (`{"value": 100}`), in rounds that rotate the order of the targets;
p50/p90/p99 per target, ratios per round with their median and range, the load average per
round. Writes original.md and original.json to --out (default examples/bench/results/) and prints
the targets. Every process it starts is stopped on exit.
"""

import argparse
import glob
import hashlib
import importlib
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import run as bench  # noqa: E402

TASKS = ("entrytask", "additiontask")
BODY = json.dumps({"value": 100})  # bench/run_bench posts {"value": N}, N = 100, 200, ...
ANSWER = "101"  # entrytask calls additiontask until it reaches N: one call, N + 1
ADDRESS = "127.0.0.1"  # the Fusionizer-Server-Address the original gives its functions
TARGETS = ("original_api", "original_direct", "serve_fused", "standin_trivial", "serve_unfused")
LABELS = {
    "original_api": "original: its API server → fused function (`POST /entrytask`)",
    "original_direct": "original: its fused function called directly (stand-in)",
    "serve_fused": "fusionizer serve, fused (`POST /entrytask`)",
    "standin_trivial": "the stand-in alone, trivial handler",
    "serve_unfused": "fusionizer serve, every task alone (context)",
}
TARGET_RATIO = 20.0


class Settings:
    """Sample counts and time bounds: every loop has a max count and a deadline."""

    def __init__(self, args):
        self.rounds = args.rounds
        self.seconds = args.seconds
        self.warmup = 30
        self.fuse_after = args.fuse_after
        self.start_timeout = 600.0


# ---------------------------------------------------------------------------------------------
# the original's environment


def find_python(choice):
    """A Python 3.12+ for the original (api_server.py and mapper.py nest quotes in f-strings)."""
    # the oldest first: the original pins PyYAML 6.0.1, whose newest wheels are for 3.12
    candidates = [choice] if choice else ["python3.12", "python3.13", "python3"] + pyenv_pythons()
    probe = "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)"
    for name in candidates:
        path = shutil.which(name) or (name if os.path.exists(name) else None)
        if path and subprocess.run([path, "-c", probe], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL).returncode == 0:
            return path
    raise SystemExit("the original needs Python 3.12 or later (its api_server.py nests quotes in "
                     "f-strings); {0}: pass one with --python PATH".format(
                         "--python {0} is older or does not run".format(choice) if choice
                         else "none of python3.12, python3.13, python3 on PATH or pyenv's is"))


def pyenv_pythons():
    """pyenv's 3.12+ interpreters (a pyenv shim on PATH fails when its version is not selected)."""
    pyenv = shutil.which("pyenv")
    if not pyenv:
        return []
    root = subprocess.run([pyenv, "root"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
    found = glob.glob(os.path.join(root, "versions", "3.1[2-9]*", "bin", "python3"))
    return sorted(found, key=lambda p: [int(n) for n in re.findall(r"\d+", p.split(os.sep)[-3])])


def original_venv(cache, checkout, python):
    """A virtualenv with the original's requirements.txt pins and, for the stand-in, what
    fusionizer's worker environment holds (nuclio-sdk, msgpack); created once, cached."""
    files = [os.path.join(checkout, "requirements.txt"), os.path.join(ROOT, "dispatcher", "requirements.txt")]
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            digest.update(f.read())
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"], check=True,
                             stdout=subprocess.PIPE).stdout
    digest.update(version)
    venv = os.path.join(cache, "original-venv-" + digest.hexdigest()[:12])
    venv_python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, ".complete")
    if not os.path.exists(marker):
        bench.log("creating the original's virtualenv in {0}".format(venv))
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", venv], check=True)
        argv = [venv_python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        for path in files:
            argv += ["-r", path]
        subprocess.run(argv, check=True)
        open(marker, "w").close()
    return venv_python


def nuctl_document(port):
    """What `nuctl get function NAME --output json` prints, split around NAME.

    The shape is nuclio's: `getFunctionCommandeer.renderFunctionConfigWithStatus` renders one
    `functionconfig.ConfigWithStatus` (the function's config inline, `status` beside it) when one
    function matches (nuclio pkg/nuctl/command/get.go), through `Renderer.RenderJSON`, which
    indents with tabs and ends with a newline (pkg/renderer/renderer.go). `status` fields are
    `functionconfig.Status`'s (pkg/functionconfig/types.go): `state`, `httpPort`,
    `internalInvocationUrls` (`host:port`, what the original reads). The local platform fills
    the invocation URLs as `address:port` (pkg/platform/local/platform.go,
    populateFunctionInvocationStatus). The document is trimmed to a few fields: a real one
    carries the whole spec (struct fields such as `resources`, `build` and `platform` are never
    left out), which would only make the original's `json.loads` slower."""
    marker = "\x00NAME\x00"
    # Go's encoding/json writes fields in declaration order and, with `omitempty`, leaves out
    # zero values and empty lists (every field here has it)
    status = {"state": "ready"}
    if port:
        status.update(httpPort=port, internalInvocationUrls=["{0}:{1}".format(ADDRESS, port)])
    doc = {
        "metadata": {"name": marker, "namespace": "nuclio"},
        "spec": {"description": "Fusion Group", "handler": "handler:handler", "runtime": "python"},
        "status": status,
    }
    text = json.dumps(doc, indent="\t", separators=(",", ": ")) + "\n"
    head, tail = text.split(json.dumps(marker))
    return head + '"', '"' + tail


C_NUCTL = r"""/* fake nuctl written by fusionizer's examples/bench/original.py */
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    /* `get function NAME --output json ...`: the fixed document; deploy, delete and a bare
       `nuctl` (the original's check that it is installed) do nothing */
    if (argc > 3 && strcmp(argv[1], "get") == 0 && strcmp(argv[2], "function") == 0) {
        fputs(HEAD, stdout);
        fputs(argv[3], stdout);
        fputs(TAIL, stdout);
    }
    return 0;
}
"""


def install_fake_nuctl(bindir, port):
    """Writes `bindir/nuctl` (replacing it atomically): a compiled C program when a C compiler
    is on PATH, else a shell script. Returns which."""
    head, tail = nuctl_document(port)
    staging = os.path.join(bindir, ".nuctl.new")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        source = os.path.join(bindir, "nuctl.c")
        with open(source, "w") as f:
            # a JSON string of ASCII text is also a valid C string literal
            f.write("#define HEAD {0}\n#define TAIL {1}\n".format(json.dumps(head), json.dumps(tail)))
            f.write(C_NUCTL)
        # static when the C library allows it: no dynamic loader at each start
        kind = "a C program ({0} -O2 -static)".format(os.path.basename(cc))
        if subprocess.run([cc, "-O2", "-static", "-o", staging, source], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode != 0:
            subprocess.run([cc, "-O2", "-o", staging, source], check=True)
            kind = "a C program ({0} -O2, dynamically linked)".format(os.path.basename(cc))
    else:
        quote = lambda s: "'" + s.replace("'", "'\\''") + "'"  # noqa: E731
        with open(staging, "w") as f:
            f.write("#!/bin/sh\n# fake nuctl written by fusionizer's examples/bench/original.py\n"
                    'if [ "$1" = get ] && [ "$2" = function ]; then printf "%s%s%s" {0} "$3" {1}; fi\n'
                    .format(quote(head), quote(tail)))
        os.chmod(staging, 0o755)
        kind = "a shell script (no C compiler on PATH)"
    os.replace(staging, os.path.join(bindir, "nuctl"))
    return kind


def free_port():
    with socket.socket() as s:
        s.bind((ADDRESS, 0))
        return s.getsockname()[1]


def port_free(port):
    """Whether a server could listen on the port (connections of an earlier run that linger in
    TIME_WAIT do not stop one: servers set SO_REUSEADDR, as serve's tokio listener does)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ADDRESS, port))
        except OSError:
            return False
    return True


def request(port, method, path, body=None, headers=None):
    client = bench.Client(port, timeout=30.0)
    try:
        return client.request(method, path, body, headers)
    finally:
        client.close()


def upload(port, task, task_dir):
    """`PUT /<task>` with the task's directory zipped, as the original's bench/run_bench does."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for base, _, names in os.walk(task_dir):
            for name in sorted(names):
                path = os.path.join(base, name)
                z.write(path, os.path.relpath(path, task_dir))
    boundary = uuid.uuid4().hex
    body = (("--{0}\r\nContent-Disposition: form-data; name=\"zip_file\"; filename=\"{1}.zip\"\r\n"
             "Content-Type: application/zip\r\n\r\n").format(boundary, task).encode()
            + buffer.getvalue() + "\r\n--{0}--\r\n".format(boundary).encode())
    status, answer = request(port, "PUT", "/" + task, body,
                             {"Content-Type": "multipart/form-data; boundary=" + boundary})
    if status != 200:
        raise SystemExit("the original's PUT /{0} answered {1}: {2!r}".format(task, status, answer[:500]))


def wait_until(what, deadline, check, proc=None, log_path=None):
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit("{0}: the process exited with {1}; see {2}".format(what, proc.returncode, log_path))
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit("{0}: not within the deadline; see {1}".format(what, log_path))


# ---------------------------------------------------------------------------------------------
# the two processes that run in the original's virtualenv (hidden modes of this script)


def original_server_mode(args):
    """Runs the original's `main()` unchanged in --workdir, uvicorn bound to 127.0.0.1:--port."""
    os.chdir(args.workdir)
    import uvicorn

    real_run = uvicorn.run

    def run_on_loopback(app, **kwargs):
        kwargs.update(host=ADDRESS, port=args.port)
        return real_run(app, **kwargs)

    uvicorn.run = run_on_loopback  # ApiServer.run calls uvicorn.run(app, host="0.0.0.0", port=8000)
    sys.argv = ["nuclio_fusionizer", "--address", ADDRESS, "--platform", "local",
                "--config", os.path.join(args.workdir, "config.json")]
    from nuclio_fusionizer import main as original_main

    original_main.main()


def standin_mode(args):
    """Nuclio's stand-in: the fused function's `handler.handler` behind bare_server's server,
    with the context Nuclio's wrapper gives a handler. Prints its port; serves until stdin
    closes."""
    import nuclio_sdk

    import bare_server

    sys.path.insert(0, args.function_dir)
    os.environ.setdefault("NUCLIO_FUNCTION_NAME", os.path.basename(args.function_dir))
    handler = importlib.import_module("handler").handler
    logger = nuclio_sdk.Logger(logging.WARNING, name="standin")
    context = nuclio_sdk.Context(logger, nuclio_sdk.Platform("local"), "0", bare_server.TRIGGER)
    server = bare_server.make_server(handler, context)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()


# ---------------------------------------------------------------------------------------------
# the load generator


class Generator(bench.Generator):
    """run.py's `wrk` generator with extra request headers (the original's function reads
    `Task-Name` and `Fusionizer-Server-Address`, which its API server sets)."""

    headers = {}

    def _script(self, method, body):
        key = (method, body, tuple(sorted(self.headers.items())))
        if key not in self.scripts:
            lines = ['wrk.body = {0}'.format(json.dumps(body)),
                     'wrk.headers["Content-Type"] = "application/json"']
            lines += ['wrk.headers[{0}] = {1}'.format(json.dumps(k), json.dumps(v))
                      for k, v in sorted(self.headers.items())]
            path = os.path.join(self.work, "wrk-original-{0}.lua".format(len(self.scripts)))
            with open(path, "w") as f:
                f.write(bench.WRK_SCRIPT.format(method=method, body="\n".join(lines)))
            self.scripts[key] = path
        return self.scripts[key]

    def measure(self, endpoint, seconds, warmup):
        """`wrk` on one endpoint after `warmup` requests with its headers (run.py's own warm-up
        follows, without them: the original's function answers those with a 500, unmeasured)."""
        port, path, headers = endpoint
        all_headers = dict(headers, **{"Content-Type": "application/json"})
        client = bench.Client(port, timeout=30.0)
        for _ in range(warmup):
            client.request("POST", path, BODY.encode(), all_headers)
        client.close()
        self.headers = headers
        return self.run(port, path, 1, seconds, body=BODY)


def check_answers(endpoints):
    """Every target answers 200 (and the original's and fusionizer's entrytask the same value)."""
    answers = {}
    for target, (port, path, headers) in endpoints.items():
        status, data = request(port, "POST", path, BODY.encode(),
                               dict(headers, **{"Content-Type": "application/json"}))
        answers[target] = data.decode("utf-8", "replace")
        if status != 200:
            raise SystemExit("{0} answered {1}: {2!r}".format(target, status, data[:500]))
        if target != "standin_trivial" and answers[target].strip() != ANSWER:
            raise SystemExit("{0} answered {1!r}, expected {2!r}".format(target, answers[target], ANSWER))
    return answers


def measure(settings, gen, endpoints):
    order = [t for t in TARGETS if t in endpoints]
    rounds = []
    for r in range(settings.rounds):
        row = {"loadavg": bench.loadavg(), "order": order[r % len(order):] + order[:r % len(order)]}
        for target in row["order"]:
            out = gen.measure(endpoints[target], settings.seconds, settings.warmup)
            if out["failed"]:
                raise SystemExit("{0}: {1} failed requests in round {2}".format(target, out["failed"], r + 1))
            row[target] = out
        for p in ("p50", "p90", "p99"):
            fused = row["serve_fused"]["latency_us"][p]
            row["api_ratio_" + p] = row["original_api"]["latency_us"][p] / fused
            row["direct_ratio_" + p] = row["original_direct"]["latency_us"][p] / fused
        p50 = {t: row[t]["latency_us"]["p50"] for t in order}
        # what the original's API server adds (FastAPI, `nuctl get`, requests) and what its
        # fused function costs beyond the stand-in (its handler, Dispatcher, the tasks)
        row["api_minus_direct_us"] = p50["original_api"] - p50["original_direct"]
        row["direct_minus_standin_us"] = p50["original_direct"] - p50["standin_trivial"]
        row["serve_minus_standin_us"] = p50["serve_fused"] - p50["standin_trivial"]
        rounds.append(row)
        bench.log("round {0} [load {1}]: p50 {2}; serve vs API {3:.1f}x, vs direct {4:.2f}x".format(
            r + 1, " ".join(map(str, row["loadavg"])),
            ", ".join("{0} {1:.0f} µs".format(t, row[t]["latency_us"]["p50"]) for t in order),
            row["api_ratio_p50"], row["direct_ratio_p50"]))
    results = {"rounds": rounds,
               "latency_us": {t: bench.median_summary([row[t]["latency_us"] for row in rounds]) for t in order}}
    for kind in ("api", "direct"):
        for p in ("p50", "p90", "p99"):
            results["{0}_ratio_{1}".format(kind, p)] = bench.spread([row["{0}_ratio_{1}".format(kind, p)]
                                                                     for row in rounds])
    for key in ("api_minus_direct_us", "direct_minus_standin_us", "serve_minus_standin_us"):
        results[key] = bench.spread([row[key] for row in rounds])
    results["standin_share"] = bench.spread([
        row["standin_trivial"]["latency_us"]["p50"] / row["original_direct"]["latency_us"]["p50"]
        for row in rounds])
    return results


def targets(results):
    m = results["measured"]
    api = m["api_ratio_p50"]
    direct = m["direct_ratio_p50"]
    return [
        ("serve (fused) vs the original through its API server: ≥ {0:.0f}× (p50)".format(TARGET_RATIO),
         bench.ratio_text(api, 1), api["median"] >= TARGET_RATIO),
        ("serve (fused) vs the original's fused function called directly (report)",
         bench.ratio_text(direct), None),
    ]


def render_markdown(results):
    m = results["machine"]
    out = ["# fusionizer vs the original nuclio_fusionizer", ""]
    out.append("Written by `{0}` on {1}.".format(results["command"], results["date"]))
    out.append("")
    out.append("- machine: {0} cores, {1}, kernel {2}; load average {3} at start, {4} at end".format(
        m["cores"], m["cpu"], m["kernel"], " ".join(map(str, m["loadavg_start"])),
        " ".join(map(str, m["loadavg_end"]))))
    out.append("- the original: {0} at commit `{1}`{2}, Python {3}".format(
        "marvin-steinke/nuclio_fusionizer", results["original"]["commit"],
        "" if not results["original"]["modified"] else " (**with local changes**)",
        results["original"]["python"]))
    out.append("- fake `nuctl`: {0}; `nuctl get function` alone: p50 {1:.0f} µs (fork/exec/wait from "
               "Python, {2} runs)".format(results["nuctl"]["kind"], results["nuctl"]["get_us"]["p50"],
                                         results["nuctl"]["get_us"]["n"]))
    out.append("- load generator: {0}, concurrency 1, {1} s per target per round, {2} rounds rotating "
               "the order; `POST` body `{3}`".format(results["generator"], results["seconds"],
                                                    results["rounds_count"], BODY))
    if results.get("unfused_skipped"):
        out.append("- every task alone: skipped ({0})".format(results["unfused_skipped"]))
    out += ["", "## Latency (µs, median of the rounds' percentiles)", "",
            "| target | p50 | p90 | p99 |", "|---|---|---|---|"]
    meas = results["measured"]
    for target, lat in meas["latency_us"].items():
        out.append("| {0} | {1} | {2} | {3} |".format(LABELS[target], bench.fmt(lat["p50"]),
                                                       bench.fmt(lat["p90"]), bench.fmt(lat["p99"])))
    out += ["", "## Ratios (median over rounds, range)", "",
            "| | p50 | p90 | p99 |", "|---|---|---|---|"]
    for kind, label in (("api", "original through its API server / serve fused"),
                        ("direct", "original's fused function directly / serve fused")):
        out.append("| {0} | {1} | {2} | {3} |".format(label, *[
            bench.ratio_text(meas["{0}_ratio_{1}".format(kind, p)]) for p in ("p50", "p90", "p99")]))
    out.append("| stand-in alone (trivial handler) / original's function directly | {0} | | |".format(
        bench.ratio_text(meas["standin_share"])))
    out += ["", "## Where the time goes (p50 differences, µs: median over rounds, range)", "",
            "| | µs |", "|---|---|"]
    for key, label in (("api_minus_direct_us", "the original's API server → function, minus calling the "
                        "function directly (FastAPI, `nuctl get`, `requests.post`)"),
                       ("direct_minus_standin_us", "the original's fused function, minus the stand-in "
                        "alone (its handler, Dispatcher, one intercepted call)"),
                       ("serve_minus_standin_us", "serve fused, minus the stand-in alone")):
        out.append("| {0} | {1:,.0f} ({2:,.0f} to {3:,.0f}) |".format(
            label, meas[key]["median"], meas[key]["min"], meas[key]["max"]))
    out += ["", "## Rounds", "", "| round | load average | order | " + " | ".join(
        "{0} p50".format(t) for t in meas["latency_us"]) + " | API / serve | direct / serve |",
        "|---" * (5 + len(meas["latency_us"])) + "|"]
    for i, row in enumerate(meas["rounds"]):
        out.append("| {0} | {1} | {2} | {3} | {4:.1f}× | {5:.2f}× |".format(
            i + 1, " ".join(map(str, row["loadavg"])), ", ".join(row["order"]),
            " | ".join(bench.fmt(row[t]["latency_us"]["p50"]) for t in meas["latency_us"]),
            row["api_ratio_p50"], row["direct_ratio_p50"]))
    out += ["", "## Targets", "", "| target | measured | |", "|---|---|---|"]
    for name, measured, ok in results["targets"]:
        out.append("| {0} | {1} | {2} |".format(name, measured, "report" if ok is None else ("met" if ok else "**not met**")))
    out += ["", "The stand-in for Nuclio is `bare_server.py`'s `ThreadingHTTPServer` calling the original's "
            "generated `handler` in-process; Nuclio's processor (Go HTTP trigger, msgpack over a Unix socket "
            "to its Python wrapper) would cost more, so every ratio here favours the original.", ""]
    return "\n".join(out)


def nuctl_cost(bindir, runs=200):
    """What the original pays per invocation for the fake alone: `subprocess.run` of
    `nuctl get function ... --output json` (this interpreter, not the original's)."""
    argv = [os.path.join(bindir, "nuctl"), "get", "function", "".join(TASKS), "--output", "json",
            "--namespace", "nuclio", "--platform", "local"]
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        subprocess.run(argv, check=True, capture_output=True)
        samples.append(time.perf_counter_ns() - start)
    return bench.summary_us(samples)


def git_state(checkout):
    def git(*argv):
        proc = subprocess.run(["git", "-C", checkout] + list(argv), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None
    return git("rev-parse", "HEAD") or "unknown (not a git checkout)", bool(git("status", "--porcelain"))


def write_fusionizer_project(root, checkout, groups):
    os.makedirs(root)
    lines = ["[project]", 'name = "{0}"'.format(os.path.basename(root)), 'platform = "local"', "", "[tasks]"]
    for task in TASKS:
        shutil.copytree(os.path.join(checkout, "bench", task), os.path.join(root, "tasks", task))
        lines.append('{0} = "tasks/{0}"'.format(task))
    lines += ["", "[[phase]]", 'after = "0s"', "groups = {0}".format(json.dumps(groups))]
    with open(os.path.join(root, "fusion.toml"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return root


class OnPort:
    """bench.Serve listens on 127.0.0.1:0; this process set makes it listen on a given port."""

    def __init__(self, procs, port):
        self.procs, self.port = procs, port

    def start(self, argv, **kwargs):
        argv = ["127.0.0.1:{0}".format(self.port) if a == "127.0.0.1:0" else a for a in argv]
        return self.procs.start(argv, **kwargs)


def start_original(settings, procs, work, checkout, python, env):
    """The original's API server with the fake nuctl on PATH, both tasks uploaded and fused by
    its StaticOptimizer. Returns (api port, the fused function's build dir, bindir, log)."""
    bindir = os.path.join(work, "bin")
    os.makedirs(bindir)
    install_fake_nuctl(bindir, None)
    workdir = os.path.join(work, "original")
    os.makedirs(workdir)
    with open(os.path.join(checkout, "bench", "config.json")) as f:
        groups = [g for setup in json.load(f).values() for g in setup]
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump({str(settings.fuse_after): groups}, f)
    port = free_port()
    log_path = os.path.join(work, "original-server.log")
    server_env = dict(env, PATH=bindir + os.pathsep + env.get("PATH", ""),
                      PYTHONPATH=os.path.abspath(checkout))
    started = time.monotonic()
    proc = procs.start([python, os.path.abspath(__file__), "--original-server", "--workdir", workdir,
                        "--port", str(port)], stdin=subprocess.DEVNULL,
                       stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=server_env)
    wait_until("the original's API server", started + settings.start_timeout,
               lambda: request(port, "GET", "/entrytask")[0] == 422, proc, log_path)
    for task in TASKS:
        upload(port, task, os.path.join(checkout, "bench", task))
    if time.monotonic() - started >= settings.fuse_after:
        raise SystemExit("the tasks were uploaded {0:.1f}s after the original started, after its "
                         "optimizer's fusion time: raise --fuse-after".format(time.monotonic() - started))

    def fused():
        status, body = request(port, "GET", "/entrytask")
        return status == 200 and b"Currently deployed with other Tasks: None" not in body

    # as bench/run_bench waits for the fusion
    wait_until("the original's fusion of {0}".format(groups), started + settings.fuse_after + 60, fused,
               proc, log_path)
    function_dir = os.path.join(workdir, "fusion_build", "".join(groups[0]))
    if not os.path.exists(os.path.join(function_dir, "handler.py")):
        raise SystemExit("the original's Fuser wrote no {0}; see {1}".format(
            os.path.join(function_dir, "handler.py"), log_path))
    return port, function_dir, bindir, log_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", help="a checkout of marvin-steinke/nuclio_fusionizer (required)")
    parser.add_argument("--python", help="Python 3.12+ for the original (default: the first 3.12+ of "
                                         "python3.12, python3.13, python3 on PATH, then pyenv's)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5, at least 3)")
    parser.add_argument("--seconds", type=int, default=3, help="seconds per target per round (default 3)")
    parser.add_argument("--fuse-after", type=int, default=10,
                        help="when the original's StaticOptimizer fuses, in seconds after it starts "
                             "(its bench/config.json says 120; default 10)")
    parser.add_argument("--binary", help="use this fusionizer binary instead of building one")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="output directory")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory and logs")
    parser.add_argument("--original-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--standin", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--function-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.original_server:
        return original_server_mode(args)
    if args.standin:
        return standin_mode(args)
    if not args.original:
        parser.error("--original DIR is required: a checkout of "
                     "https://github.com/marvin-steinke/nuclio_fusionizer (git clone it)")
    checkout = os.path.abspath(args.original)
    for task in TASKS:
        if not os.path.exists(os.path.join(checkout, "bench", task, "main.py")):
            raise SystemExit("--original {0}: no bench/{1}/main.py; is it a checkout of "
                             "marvin-steinke/nuclio_fusionizer?".format(args.original, task))
    if args.rounds < 3:
        parser.error("--rounds must be at least 3")

    settings = Settings(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    procs = bench.Procs()
    work = tempfile.mkdtemp(prefix="fusionizer-original-")
    started = time.monotonic()
    command = "python3 examples/bench/original.py --original ORIGINAL"
    try:
        results = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "command": command,
                   "machine": bench.machine(), "rounds_count": settings.rounds, "seconds": settings.seconds}
        if not shutil.which("wrk"):
            raise SystemExit("original.py measures with `wrk`, which is not on PATH (Debian: apt-get install wrk)")
        gen = Generator("wrk", procs, work)
        results["generator"] = gen.name
        python = find_python(args.python)
        commit, modified = git_state(checkout)
        cache = bench.cache_dir()
        os.makedirs(cache, exist_ok=True)
        venv_python = original_venv(cache, checkout, python)
        results["original"] = {"commit": commit, "modified": modified, "python": subprocess.run(
            [venv_python, "-c", "import platform; print(platform.python_version())"], check=True,
            stdout=subprocess.PIPE).stdout.decode().strip()}
        if args.binary:
            binary = os.path.abspath(args.binary)
        else:
            binary, _ = bench.build_binary()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FUSIONIZER_", "NUCTL_"))}
        env.update(FUSIONIZER_CACHE_DIR=cache, NO_COLOR="1")

        # the original: API server, fusion by its own optimizer, the stand-in, the final fake nuctl
        api_port, function_dir, bindir, api_log = start_original(settings, procs, work, checkout,
                                                                 venv_python, env)
        standin_env = dict(env, PYTHONPATH=os.path.join(ROOT, "dispatcher"))
        standin = procs.start([venv_python, os.path.abspath(__file__), "--standin", "--function-dir",
                               function_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=standin_env)
        standin_port = int(standin.stdout.readline())
        results["nuctl"] = {"kind": install_fake_nuctl(bindir, standin_port)}
        results["nuctl"]["get_us"] = nuctl_cost(bindir)
        bench.log("the original is fused and served: API on {0}, its function on {1}; fake nuctl: {2}, "
                  "get p50 {3:.0f} µs".format(api_port, standin_port, results["nuctl"]["kind"],
                                              results["nuctl"]["get_us"]["p50"]))
        trivial = procs.start([venv_python, os.path.join(HERE, "bare_server.py"),
                               os.path.join(HERE, "tasks", "hello")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=standin_env)
        trivial_port = int(trivial.stdout.readline())

        # fusionizer
        fused_dir = write_fusionizer_project(os.path.join(work, "originalfused"), checkout, [list(TASKS)])
        fused = bench.Serve(procs, binary, fused_dir, env, ["--no-schedule"], os.path.join(work, "serve-fused.log"))
        bench.log("serve (fused) ready in {0:.1f}s".format(fused.wait_ready(settings.start_timeout)))
        endpoints = {
            "original_api": (api_port, "/entrytask", {}),
            "original_direct": (standin_port, "/", {"Task-Name": "entrytask", "Fusionizer-Server-Address": ADDRESS}),
            "serve_fused": (fused.port, "/entrytask", {}),
            "standin_trivial": (trivial_port, "/hello", {}),
        }
        if port_free(8000):
            alone_dir = write_fusionizer_project(os.path.join(work, "originalalone"), checkout,
                                                 [[t] for t in TASKS])
            alone = bench.Serve(OnPort(procs, 8000), binary, alone_dir, env, ["--no-schedule"],
                                os.path.join(work, "serve-alone.log"))
            bench.log("serve (every task alone, port 8000) ready in {0:.1f}s".format(
                alone.wait_ready(settings.start_timeout)))
            endpoints["serve_unfused"] = (alone.port, "/entrytask", {})
        else:
            results["unfused_skipped"] = "127.0.0.1:8000 is taken, and entrytask calls port 8000"
            bench.log("every task alone: skipped, " + results["unfused_skipped"])
        results["answers"] = check_answers(endpoints)

        results["measured"] = measure(settings, gen, endpoints)
        results["machine"]["loadavg_end"] = bench.loadavg()
        results["targets"] = targets(results)
        results["elapsed_s"] = time.monotonic() - started

        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "original.md"), "w") as f:
            f.write(render_markdown(results))
        with open(os.path.join(args.out, "original.json"), "w") as f:
            json.dump(dict(results, targets=[{"target": n, "measured": v, "met": ok}
                                             for n, v, ok in results["targets"]]),
                      f, indent=1, sort_keys=True)
            f.write("\n")
        for name, measured, ok in results["targets"]:
            print("{0:8} {1}: {2}".format("report" if ok is None else ("met" if ok else "NOT MET"),
                                          name, measured), flush=True)
        bench.log("done in {0:.0f}s; wrote {1}/original.md, original.json".format(results["elapsed_s"], args.out))
    finally:
        procs.stop_all()
        if args.keep:
            bench.log("kept {0}".format(work))
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
