"""Conformance: one corpus of tasks, run inside Nuclio's own Python wrapper and on fusionizer's
runtime, must answer alike.

The corpus (`CORPUS`) covers every kind of handler return value, what a handler sees of its
event, logger calls with structured fields, async handlers with an async `init_context`, and a
`call_function` between two tasks. It runs:

- (a) unfused inside the real `_nuclio_wrapper.py` (Nuclio 1.14.1, nuclio-sdk 0.5.13, Python
  3.9), through `processor.Processor`, the processor stand-in: the reference;
- (b) fused (all tasks in one function, as `fusionizer build` writes it) inside the same wrapper;
- (b1) each task alone in the artifact `fusionizer build` writes for it, in the same wrapper;
- (c) fused on the local platform's worker (`local_worker.LocalWorker`), as `fusionizer serve`
  runs it, and (c1) each task alone there;
- (d) a `call_function` answered in-process (fused) against the same call over HTTP to the
  callee running alone in the real wrapper, as the SDK decodes it.

Every answer is compared with (a). The differences that remain are deliberate and pinned here
(`docs/runtime.md` explains them).

Settings (environment):
- `FUSIONIZER_NUCLIO_UPSTREAM`: the directory holding Nuclio 1.14.1's unchanged files
  (`pkg/processor/runtime/python/py/_nuclio_wrapper.py`). Unset: the suite skips, saying so.
  Set but the files, the interpreter or the binary are missing: the suite fails.
- `FUSIONIZER_NUCLIO_PYTHON`: Python 3.9 with the wrapper's pinned requirements (default
  `.venv-nuclio/bin/python`, which `scripts/test` builds).
- `FUSIONIZER_LOCAL_PYTHON`: the local platform's Python (default `.venv/bin/python`).
- `FUSIONIZER_BIN`: the fusionizer binary (default `target/debug/fusionizer`).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import local_worker  # noqa: E402
import processor  # noqa: E402
import trigger  # noqa: E402

UPSTREAM_ENV = "FUSIONIZER_NUCLIO_UPSTREAM"

FUNCTION_YAML = """\
apiVersion: nuclio.io/v1
kind: NuclioFunction
metadata:
  name: {name}
spec:
  runtime: python:3.9
  handler: main:handler
"""

CORPUS = {
    "returns": '''
        import nuclio_sdk

        def handler(context, event):
            kind = event.body.decode() if isinstance(event.body, bytes) else str(event.body)
            if kind == "str":
                return "text \\u00e9"
            if kind == "bytes":
                return b"\\x00\\xffraw"
            if kind == "dict":
                return {"a": 1, "b": [1, 2], "c": None}
            if kind == "list":
                return [1, "two", {"three": 3}]
            if kind == "list_of_dicts":
                return [{"a": 1}, {"b": 2}]
            if kind == "list_of_str":
                return ["first", "second"]
            if kind == "list_of_bytes":
                return [b"\\x01first", b"second"]
            if kind == "list_of_responses":
                return [nuclio_sdk.Response(body="r1", status_code=201,
                                            headers={"X-One": "1"}), "second"]
            if kind == "list_of_lists":
                return [[1, 2], [3]]
            if kind == "empty_list":
                return []
            if kind == "none":
                return None
            if kind == "int":
                return 42
            if kind == "float":
                return 1.5
            if kind == "tuple":
                return 201, {"created": True}
            if kind == "tuple_str":
                return 202, "accepted"
            if kind == "tuple_three":
                return 1, 2, 3
            if kind == "response":
                return nuclio_sdk.Response(body="made", status_code=203,
                                           headers={"X-Custom": "v", "X-Number": 7},
                                           content_type="application/x-custom")
            if kind == "response_dict":
                return nuclio_sdk.Response(body={"k": "v"}, status_code=200)
            if kind == "response_bytes":
                return nuclio_sdk.Response(body=b"\\x00bin", content_type="application/octet-stream")
            if kind == "raise":
                raise ValueError("boom")
            return "unknown kind " + kind
    ''',
    "echo": '''
        def _body(body):
            if isinstance(body, bytes):
                return {"bytes": body.decode("latin-1")}
            if isinstance(body, str):
                return {"str": body}
            if body is None:
                return {"none": True}
            return {"json": body}

        def handler(context, event):
            return {
                "body": _body(event.body),
                "content_type": event.content_type,
                "fields": event.fields,
                "method": event.method,
                "path": event.path,
                "trigger": [event.trigger.kind, event.trigger.name],
                "context_trigger": [context.trigger.kind, context.trigger.name],
                "x_headers": {k: v for k, v in event.headers.items() if k.lower().startswith("x-t")},
                "size": event.size,
            }
    ''',
    "logs": '''
        def handler(context, event):
            context.logger.debug_with("debugging", number=1, text="t")
            context.logger.info_with("informing", nested={"a": [1, 2]})
            context.logger.warn_with("warning", flag=True)
            context.logger.error_with("failing", value=None)
            context.logger.info("plain message")
            return "logged"
    ''',
    "asyncinit": '''
        import asyncio

        async def init_context(context):
            await asyncio.sleep(0)
            setattr(context.user_data, "greeting", "hello")

        async def handler(context, event):
            await asyncio.sleep(0)
            return {"greeting": context.user_data.greeting}
    ''',
    "caller": '''
        import http.client
        import os

        import nuclio_sdk

        def init_context(context):
            # Only where the callee runs alone behind an HTTP server (the suite's leg d): the
            # SDK's own hook for where its connections go (nuclio_sdk/platform.py).
            address = os.environ.get("CONFORMANCE_CALLEE_ADDRESS")
            if address:
                context.platform._connection_provider = (
                    lambda url, timeout=None: http.client.HTTPConnection(address, timeout=timeout))

        def handler(context, event):
            body = event.body.decode() if isinstance(event.body, bytes) else event.body
            call = {
                "dict": nuclio_sdk.Event(body={"x": 1}, path="/sub", headers={"X-Test": "t"},
                                         method="POST"),
                "text": nuclio_sdk.Event(body="plain", content_type="text/plain", method="PUT",
                                         path="/"),
            }[body]
            response = context.platform.call_function("echo", call)
            return {
                "status": response.status_code,
                "content_type": response.content_type,
                "body": response.body if isinstance(response.body, (dict, list))
                else response.body.decode("latin-1"),
                "x_headers": {k: v for k, v in response.headers.items() if k.startswith("x-t")},
            }
    ''',
}

# (name, task, invoke kwargs)
CASES = [("returns/" + kind, "returns", {"body": kind.encode(), "content_type": "text/plain"})
         for kind in ("str", "bytes", "dict", "list", "list_of_dicts", "list_of_str",
                      "list_of_bytes", "list_of_responses", "list_of_lists", "empty_list",
                      "none", "int", "float", "tuple", "tuple_str", "tuple_three", "response",
                      "response_dict", "response_bytes", "raise")]
CASES += [
    ("echo/text", "echo", {"body": b"hi \xc3\xa9", "content_type": "text/plain"}),
    ("echo/json", "echo", {"body": b'{"a": [1, 2]}', "content_type": "application/json"}),
    ("echo/json-charset", "echo",
     {"body": b'{"a": 1}', "content_type": "application/json; charset=utf-8"}),
    ("echo/bad-json", "echo", {"body": b"{not json", "content_type": "application/json"}),
    ("echo/octets", "echo", {"body": b"\x00\x01\xff", "content_type": "application/octet-stream"}),
    ("echo/empty", "echo", {"body": b"", "content_type": ""}),
    ("echo/fields", "echo", {"body": b"", "fields": {"q": "1", "name": "x y"}, "method": "GET"}),
    ("echo/put", "echo", {"body": b"x", "content_type": "text/plain", "method": "PUT",
                          "headers": {"X-Test-One": "1"}}),
    ("echo/cron", "echo", {"body": b"", "trigger": ("cron", "every-minute"),
                           "headers": {"Task-Name": "echo"}}),
    ("logs", "logs", {"body": b""}),
    ("asyncinit", "asyncinit", {"body": b""}),
]


def _fail(message):
    raise AssertionError(message)


class Environment(object):
    """Where everything is, checked once: fails (not skips) when the upstream setting is present
    but something it needs is not."""

    def __init__(self):
        upstream = os.environ.get(UPSTREAM_ENV)
        if not upstream:
            raise unittest.SkipTest(
                "{0} is not set: the conformance suite against Nuclio's own Python wrapper "
                "is skipped. Point it at a directory of Nuclio 1.14.1's unchanged files "
                "(see docs/runtime.md) to run it.".format(UPSTREAM_ENV))
        self.upstream = os.path.abspath(upstream)
        self.wrapper = processor.find_wrapper(self.upstream)
        self.python = os.environ.get("FUSIONIZER_NUCLIO_PYTHON") or os.path.join(
            REPO, ".venv-nuclio", "bin", "python")
        self.local_python = os.environ.get("FUSIONIZER_LOCAL_PYTHON") or os.path.join(
            REPO, ".venv", "bin", "python")
        self.binary = os.environ.get("FUSIONIZER_BIN") or os.path.join(
            REPO, "target", "debug", "fusionizer")
        for what, path, fix in (
            ("Nuclio's Python (3.9 with nuclio-sdk 0.5.13 and msgpack)", self.python,
             "run scripts/test, which builds .venv-nuclio, or set FUSIONIZER_NUCLIO_PYTHON"),
            ("the local platform's Python", self.local_python,
             "run scripts/test, which builds .venv, or set FUSIONIZER_LOCAL_PYTHON"),
            ("the fusionizer binary", self.binary, "run `cargo build` or set FUSIONIZER_BIN"),
        ):
            if not os.access(path, os.X_OK):
                _fail("{0} is missing at {1} ({2}={3} asks for the conformance suite): "
                      "{4}".format(what, path, UPSTREAM_ENV, upstream, fix))
        probe = subprocess.run(
            [self.python, "-c", "import sys, msgpack, nuclio_sdk; print(sys.version_info[:2])"],
            capture_output=True, text=True)
        if probe.returncode != 0 or probe.stdout.strip() != "(3, 9)":
            _fail("{0} is not Python 3.9 with msgpack and nuclio-sdk: {1}{2}".format(
                self.python, probe.stdout, probe.stderr))


def write_project(root, group):
    """A project with the corpus; `group` puts every task in one function."""
    os.makedirs(root)
    lines = ['[project]\nname = "conf"\n\n[tasks]\n']
    for task, source in CORPUS.items():
        directory = os.path.join(root, "tasks", task)
        os.makedirs(directory)
        with open(os.path.join(directory, "main.py"), "w") as out:
            out.write(textwrap.dedent(source))
        with open(os.path.join(directory, "function.yaml"), "w") as out:
            out.write(FUNCTION_YAML.format(name=task))
        lines.append('{0} = "tasks/{0}"\n'.format(task))
    if group:
        lines.append('\n[[phase]]\nafter = "0s"\ngroups = [[{0}]]\n'.format(
            ", ".join('"{0}"'.format(task) for task in sorted(CORPUS))))
    with open(os.path.join(root, "fusion.toml"), "w") as out:
        out.write("".join(lines))


def handler_of(root):
    """`spec.handler` of a built function's function.yaml (what the processor runs)."""
    with open(os.path.join(root, "function.yaml")) as source:
        for line in source:
            if line.startswith("  handler: "):
                return line.split(":", 1)[1].strip()
    _fail("no spec.handler in {0}/function.yaml".format(root))


def comparable(answer):
    """An answer as a client compares it: a handler exception's body only up to its traceback
    (file paths and frames differ by where the code lives)."""
    body = answer["body"]
    if answer["status"] == 500 and body.startswith(b"Exception caught in handler"):
        body = body.split(b": Traceback", 1)[0]
    return {"status": answer["status"], "content_type": answer["content_type"],
            "headers": answer["headers"], "body": body}


def log_view(records):
    """Task log records as (level, message, fields), without the runtime's own records and the
    bookkeeping fields each runtime binds (`worker_id` in the wrapper; `task` locally)."""
    levels = {"warning": "warn"}
    out = []
    for record in records:
        if record.get("message") in ("debugging", "informing", "warning", "failing",
                                     "plain message"):
            fields = {k: v for k, v in (record.get("with") or {}).items()
                      if k not in ("worker_id", "task")}
            level = record.get("level")
            out.append((levels.get(level, level), record["message"], fields))
    return out


class ConformanceTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.env = Environment()
        cls.tmp = tempfile.mkdtemp(prefix="fz-conformance-")
        cls.unfused_root = os.path.join(cls.tmp, "unfused")
        cls.fused_root = os.path.join(cls.tmp, "fused")
        write_project(cls.unfused_root, group=False)
        write_project(cls.fused_root, group=True)
        fused = cls._build(cls.fused_root)
        if len(fused) != 1:
            _fail("expected one fused function, got {0}".format(fused))
        cls.fused_dir = fused[0]
        cls.alone_dirs = {os.path.basename(path)[len("conf-"):]: path
                          for path in cls._build(cls.unfused_root)}
        cls.answers = {}
        cls.logs = {}
        cls._run_all()

    @classmethod
    def _build(cls, root):
        """`fusionizer build` of a project: the function directories it writes."""
        out = os.path.join(root, "build")
        build = subprocess.run([cls.env.binary, "build", "--out", out], cwd=root,
                               capture_output=True, text=True)
        if build.returncode != 0:
            _fail("fusionizer build failed: " + build.stdout + build.stderr)
        return sorted(os.path.join(out, name) for name in os.listdir(out))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def _unfused(cls, task, **kw):
        return processor.Processor("main:handler", [os.path.join(cls.unfused_root, "tasks", task)],
                                   cls.env.python, cls.env.wrapper, **kw)

    @classmethod
    def _run_all(cls):
        env = cls.env
        legs = {"a": {}, "b": {}, "c": {}}
        logs = {}
        # (a) unfused in the real wrapper
        for task in sorted(CORPUS):
            if task == "caller":
                continue
            with cls._unfused(task) as runtime:
                for name, case_task, kw in CASES:
                    if case_task == task:
                        legs["a"][name] = runtime.invoke(path="/" + task, **kw)
                logs["a"] = logs.get("a", []) + runtime.logs
        # (b1) each task alone in its fused artifact, in the real wrapper; (c1) the same on the
        # local worker
        legs["b1"], legs["c1"] = {}, {}
        for task, root in sorted(cls.alone_dirs.items()):
            if task == "caller":
                continue
            for leg, runtime in (
                    ("b1", processor.Processor(handler_of(root), [root], env.python,
                                               env.wrapper)),
                    ("c1", local_worker.LocalWorker(root, env.local_python, "conf-" + task))):
                with runtime:
                    for name, case_task, kw in CASES:
                        if case_task == task:
                            legs[leg][name] = runtime.invoke(path="/" + task, **kw)
        # (b) fused in the real wrapper; (c) fused on the local worker
        fused = processor.Processor(handler_of(cls.fused_dir), [cls.fused_dir], env.python,
                                    env.wrapper)
        local = local_worker.LocalWorker(cls.fused_dir, env.local_python,
                                           os.path.basename(cls.fused_dir))
        for leg, runtime in (("b", fused), ("c", local)):
            with runtime:
                for name, task, kw in CASES:
                    legs[leg][name] = runtime.invoke(path="/" + task, **kw)
                for kind in ("dict", "text"):
                    legs[leg]["caller/" + kind] = runtime.invoke(
                        path="/caller", body=kind.encode(), content_type="text/plain")
                logs[leg] = runtime.logs
        # (d) the caller alone in the real wrapper, calling the callee alone behind HTTP
        with cls._unfused("echo") as callee:
            server = trigger.serve(callee)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                address = "127.0.0.1:{0}".format(server.server_address[1])
                with cls._unfused("caller", env={"CONFORMANCE_CALLEE_ADDRESS": address}) as caller:
                    for kind in ("dict", "text"):
                        legs["a"]["caller/" + kind] = caller.invoke(
                            path="/caller", body=kind.encode(), content_type="text/plain")
            finally:
                server.shutdown()
                server.server_close()
        cls.answers = legs
        cls.logs = logs

    # ------------------------------------------------------------------ the comparisons

    def _compare(self, leg, name):
        expected = comparable(self.answers["a"][name])
        got = comparable(self.answers[leg][name])
        self.assertEqual(got, expected, "{0}: leg {1} differs from Nuclio's wrapper".format(name, leg))

    def test_fused_in_the_wrapper_answers_as_unfused(self):
        for name, _, _ in CASES:
            with self.subTest(name):
                self._compare("b", name)

    def test_local_worker_answers_as_the_wrapper(self):
        for name, _, _ in CASES:
            with self.subTest(name):
                self._compare("c", name)

    def test_alone_in_a_fused_artifact_answers_as_unfused(self):
        for leg in ("b1", "c1"):
            for name, _, _ in CASES:
                with self.subTest(leg=leg, case=name):
                    self._compare(leg, name)

    def test_a_returned_list_answers_with_its_first_element(self):
        # _nuclio_wrapper.py _encode_entrypoint_output + rpc/abstract.go ProcessEvent
        self.assertEqual(self.answers["a"]["returns/list"]["body"], b"1")
        self.assertEqual(self.answers["a"]["returns/list_of_dicts"]["body"], b'{"a": 1}')
        for leg in ("b", "c"):
            self.assertEqual(self.answers[leg]["returns/list"]["body"], b"1", leg)
            self.assertEqual(self.answers[leg]["returns/empty_list"]["status"], 500, leg)

    def test_logs_reach_the_processor_alike(self):
        expected = log_view(self.logs["a"])
        self.assertEqual(len(expected), 5, self.logs["a"])
        for leg in ("b", "c"):
            with self.subTest(leg):
                self.assertEqual(log_view(self.logs[leg]), expected)

    def test_call_function_in_process_answers_as_over_http(self):
        for kind in ("dict", "text"):
            with self.subTest(kind):
                over_http = json.loads(self.answers["a"]["caller/" + kind]["body"])
                for leg in ("b", "c"):
                    in_process = json.loads(self.answers[leg]["caller/" + kind]["body"])
                    # deliberate departure (docs/runtime.md): an in-process callee, like one
                    # called through the proxy, sees path `/<callee>` and no query fields
                    expected = dict(over_http)
                    expected["body"] = dict(over_http["body"], path="/echo", fields={})
                    self.assertEqual(in_process, expected, leg)
                    self.assertEqual(over_http["body"]["path"], "/sub" if kind == "dict" else "/")


if __name__ == "__main__":
    unittest.main()
