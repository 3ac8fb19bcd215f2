"""Dispatcher: routing, per-task contexts and imports, and in-process calls in both styles."""

import copy
import importlib.util
import json
import os
import shutil
import sys
import tempfile

import nuclio_sdk
import requests

from .support import ArtifactTestCase, CountingServer, closed_port, event

TASKB = {"main.py": """
    def handler(context, event):
        return {"sum": event.body["x"] + event.body["y"]}
"""}

NATIVE_TASKA = {"main.py": """
    import nuclio_sdk

    def handler(context, event):
        response = context.platform.call_function(
            "taskb", nuclio_sdk.Event(body={"x": event.body["x"], "y": event.body["y"]}, method="POST"))
        return {"sum": response.body["sum"], "status": response.status_code}
"""}

SESSION_TASKA = {"main.py": """
    def handler(context, event, requests_session):
        address = event.headers["Fusionizer-Server-Address"]
        port = event.headers.get("Fusionizer-Server-Port", 8000)
        response = requests_session.post(f"http://{address}:{port}/taskb", json=event.body)
        return {"sum": response.json()["sum"], "status": response.status_code}
"""}


class CallStylesTest(ArtifactTestCase):
    """The quickstart sum, fused (no request reaches the proxy) and unfused (one does)."""

    def setUp(self):
        super(CallStylesTest, self).setUp()
        self.proxy = CountingServer()
        self.addCleanup(self.proxy.close)

    def check(self, taska, fused):
        tasks = {"taska": taska, "taskb": TASKB} if fused else {"taska": taska}
        dispatcher = self.load(tasks)
        result = dispatcher.handler(self.context, event("taska", {"x": 2, "y": 3}, proxy=self.proxy.address))
        if fused:
            # On Nuclio the in-process call goes back to the proxy in a response header
            # (`_trace`), so the answer is rebuilt as the wrapper would have encoded it.
            self.assertIsInstance(result, nuclio_sdk.Response)
            self.assertRegex(result.headers["X-Fusionizer-Trace"], r"^taska taskb s 200 \d+ \d+$")
            self.assertEqual(result.content_type, "application/json")
            self.assertEqual(json.loads(result.body), {"sum": 5, "status": 200})
        else:
            self.assertEqual(result, {"sum": 5, "status": 200})
        if fused:
            self.assertEqual(self.proxy.requests, [])
            self.assertEqual(dispatcher.calls, {"local": 1, "remote": 0})
        else:
            self.assertEqual(len(self.proxy.requests), 1)
            path, headers, body = self.proxy.requests[0]
            self.assertEqual(path, "/taskb")
            self.assertEqual(headers.get("X-Fusionizer-Caller"), "taska")
            self.assertEqual(json.loads(body), {"x": 2, "y": 3})
            self.assertEqual(dispatcher.calls, {"local": 0, "remote": 1})

    def test_call_function_fused_runs_in_process(self):
        self.check(NATIVE_TASKA, fused=True)

    def test_call_function_unfused_goes_through_the_proxy(self):
        self.check(NATIVE_TASKA, fused=False)

    def test_requests_session_fused_runs_in_process(self):
        self.check(SESSION_TASKA, fused=True)

    def test_requests_session_unfused_goes_through_the_proxy(self):
        self.check(SESSION_TASKA, fused=False)

    def test_sibling_call_matches_any_port_of_the_proxy_host(self):
        taska = {"main.py": """
            def handler(context, event, requests_session):
                return requests_session.post("http://127.0.0.1:8000/taskb?q=1", json=event.body).json()
        """}
        dispatcher = self.load({"taska": taska, "taskb": TASKB})
        os.environ["FUSIONIZER_PROXY_URL"] = "http://127.0.0.1:%d" % closed_port()
        self.addCleanup(os.environ.pop, "FUSIONIZER_PROXY_URL", None)
        self.assertEqual(dispatcher.handler(self.context, event("taska", {"x": 1, "y": 1})), {"sum": 2})
        self.assertEqual(dispatcher.calls, {"local": 1, "remote": 0})

    def test_other_hosts_go_out_unchanged(self):
        taska = {"main.py": """
            def handler(context, event, requests_session):
                url = event.body["url"]
                return requests_session.post(url, json={"x": 1, "y": 2}).json()
        """}
        dispatcher = self.load({"taska": taska, "taskb": TASKB})
        url = "http://localhost:%d/taskb" % self.proxy.address[1]
        result = dispatcher.handler(self.context, event("taska", {"url": url}, proxy=("fusionizer-proxy.invalid", 8000)))
        self.assertEqual(result, {"sum": 3})
        self.assertEqual(len(self.proxy.requests), 1)
        self.assertNotIn("X-Fusionizer-Caller", self.proxy.requests[0][1])
        self.assertEqual(dispatcher.calls, {"local": 0, "remote": 0})


class RoutingTest(ArtifactTestCase):
    def test_missing_task_name_is_400_naming_the_tasks(self):
        dispatcher = self.load({"taska": NATIVE_TASKA, "taskb": TASKB}, function="shop")
        response = dispatcher.handler(self.context, event(None, b"x"))
        self.assertIsInstance(response, nuclio_sdk.Response)
        self.assertEqual((response.status_code, response.content_type), (400, "text/plain"))
        self.assertIn("`Task-Name`", response.body)
        self.assertIn("`shop`", response.body)
        self.assertIn("`taska`, `taskb`", response.body)

    def test_unknown_task_is_404_naming_it(self):
        dispatcher = self.load({"taska": NATIVE_TASKA, "taskb": TASKB}, function="shop")
        response = dispatcher.handler(self.context, event("nope", b"x"))
        self.assertEqual((response.status_code, response.content_type), (404, "text/plain"))
        self.assertIn("`nope`", response.body)
        self.assertIn("`taska`, `taskb`", response.body)

    def test_task_name_header_is_case_insensitive(self):
        dispatcher = self.load({"taskb": TASKB})
        ev = event(None, {"x": 1, "y": 2}, headers={"task-name": "taskb"})
        self.assertEqual(dispatcher.handler(self.context, ev), {"sum": 3})
        self.assertEqual(dispatcher.last_task, "taskb")


class ContextsAndImportsTest(ArtifactTestCase):
    def test_each_task_imports_its_own_modules_even_lazily(self):
        def task(tag):
            return {
                "main.py": """
                    import utils
                    from lib.deep import VALUE

                    def init_context(context):
                        context.user_data.tag = utils.TAG

                    def handler(context, event):
                        import helpers
                        return [utils.TAG, VALUE, helpers.TAG, context.user_data.tag, utils.__file__]
                """,
                "utils.py": "TAG = %r\n" % tag,
                "helpers.py": "TAG = %r\n" % (tag + "-lazy"),
                "lib/__init__.py": "",
                "lib/deep.py": "VALUE = %r\n" % (tag + "-deep"),
            }
        dispatcher = self.load({"taska": task("a"), "taskb": task("b")})
        for name, tag in (("taska", "a"), ("taskb", "b")):
            result = dispatcher.handler(self.context, event(name))
            self.assertEqual(result[:4], [tag, tag + "-deep", tag + "-lazy", tag])
            self.assertIn(os.path.join("fusionizer_tasks", name, "utils.py"), result[4])
        self.assertNotIn("utils", sys.modules)
        self.assertNotIn("helpers", sys.modules)

    def test_an_import_hook_installed_over_ours_does_not_make_a_loop(self):
        import builtins

        from fusionizer_dispatcher import _imports

        task = {"main.py": "import utils\n\ndef handler(context, event):\n    return utils.TAG\n",
                "utils.py": "TAG = 'own'\n"}
        self.load({"first": task})
        ours, calls = builtins.__import__, []

        def other(*args, **kwargs):  # another library's wrapper, installed after ours
            calls.append(args[0])
            return ours(*args, **kwargs)

        builtins.__import__ = other
        try:
            self.tmp = tempfile.mkdtemp(prefix="fz-dispatcher-")
            self.addCleanup(shutil.rmtree, self.tmp, True)
            dispatcher = self.load({"second": copy.deepcopy(task)})
            self.assertIs(builtins.__import__, other)
            self.assertEqual(dispatcher.handler(self.context, event("second")), "own")
            self.assertIn("utils", calls)
        finally:
            builtins.__import__ = ours
        self.assertEqual(_imports._original_import.__module__, "builtins")

    def test_each_task_gets_its_own_context_and_init_runs_once(self):
        source = {"main.py": """
            INITS = []

            def init_context(context):
                INITS.append(context)
                context.user_data.count = 0
                context.logger.info("init")

            def handler(context, event):
                context.user_data.count += 1
                context.logger.info_with("handled", n=context.user_data.count)
                return [len(INITS), context.user_data.count, context.worker_id, context.trigger.kind]
        """}
        dispatcher = self.load({"taska": source, "taskb": copy.deepcopy(source)})
        self.assertEqual(dispatcher.handler(self.context, event("taska")), [1, 1, "0", "http"])
        self.assertEqual(dispatcher.handler(self.context, event("taska")), [1, 2, "0", "http"])
        self.assertEqual(dispatcher.handler(self.context, event("taskb")), [1, 1, "0", "http"])
        a, b = (dispatcher.tasks[name].context for name in ("taska", "taskb"))
        self.assertIsNot(a, self.context)
        self.assertIsNot(a.user_data, b.user_data)
        tagged = [(r.getMessage(), getattr(r, "with", {})) for r in self.recorder.records]
        self.assertIn(("init", {"task": "taska"}), tagged)
        self.assertIn(("handled", {"n": 2, "task": "taska"}), tagged)
        self.assertIn(("handled", {"n": 1, "task": "taskb"}), tagged)

    def test_init_context_is_found_where_nuclio_looks_for_it(self):
        """Nuclio calls `sys.modules[handler.__module__].init_context`: it must be the entry's."""
        from .support import write_artifact
        write_artifact(self.tmp, {"taskb": TASKB})
        spec = importlib.util.spec_from_file_location("_fz_entry_lookup", os.path.join(self.tmp, "_fusionizer_entry.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        self.addCleanup(sys.modules.pop, spec.name, None)
        spec.loader.exec_module(module)
        self.assertIs(sys.modules[module.handler.__module__], module)
        self.assertIs(getattr(sys.modules[module.handler.__module__], "init_context"), module.init_context)

    def test_async_init_and_async_callee(self):
        callee = {"main.py": """
            import asyncio

            async def init_context(context):
                await asyncio.sleep(0)
                context.user_data.ready = True

            async def handler(context, event):
                await asyncio.sleep(0)
                return {"ready": context.user_data.ready, "x": event.body["x"]}
        """}
        caller = {"main.py": """
            import nuclio_sdk

            def handler(context, event):
                return context.platform.call_function("callee", nuclio_sdk.Event(body={"x": 7}, method="POST")).body
        """}
        dispatcher = self.load({"caller": caller, "callee": callee})
        self.assertTrue(getattr(dispatcher.tasks["callee"].context.user_data, "ready", False))
        self.assertEqual(dispatcher.handler(self.context, event("caller")), {"ready": True, "x": 7})
        top = dispatcher.handler(self.context, event("callee", {"x": 1}))
        self.assertEqual(dispatcher.run_coroutine(top), {"ready": True, "x": 1})

    def test_termination_callbacks_of_every_task_run(self):
        source = """
            CALLED = []

            def init_context(context):
                context.platform.set_termination_callback(lambda: CALLED.append(%r))

            def handler(context, event):
                return CALLED
        """
        dispatcher = self.load({"taska": {"main.py": source % "a"}, "taskb": {"main.py": source % "b"}})
        self.context.platform._on_signal("termination")
        self.assertEqual(dispatcher.handler(self.context, event("taska")), ["a"])
        self.assertEqual(dispatcher.handler(self.context, event("taskb")), ["b"])


CALLEE = {"main.py": """
    import nuclio_sdk

    def handler(context, event):
        kind = event.body["kind"] if isinstance(event.body, dict) else event.body.decode()
        if kind == "none":
            return None
        if kind == "bytes":
            return b"\\x00\\xffraw"
        if kind == "dict":
            return {"a": [1, 2], "nan": float("nan")}
        if kind == "tuple":
            return 201, {"created": True}
        if kind == "tuple-text":
            return 202, "accepted"
        if kind == "response":
            return nuclio_sdk.Response(headers={"X-Str": "s", "X-Int": 2, "X-Bool": True},
                                       body={"k": 1}, status_code=203)
        if kind == "raise":
            raise ValueError("boom")
        if kind == "echo":
            return {"body": event.body, "headers": event.headers, "method": event.method,
                    "path": event.path, "fields": event.fields, "ctype": event.content_type,
                    "id": event.id}
        return "text"
"""}


class ResultsTest(ArtifactTestCase):
    """The caller sees what Nuclio would give it, in both styles."""

    def setUp(self):
        super(ResultsTest, self).setUp()
        os.environ["FUSIONIZER_PROXY_URL"] = "http://127.0.0.1:%d" % closed_port()
        self.addCleanup(os.environ.pop, "FUSIONIZER_PROXY_URL", None)
        self.dispatcher = self.load({"caller": {"main.py": "def handler(c, e):\n    return None\n"},
                                     "callee": CALLEE})
        self.platform = self.dispatcher.tasks["caller"].context.platform
        self.session = self.dispatcher._session(self.dispatcher.tasks["caller"])
        self.url = os.environ["FUSIONIZER_PROXY_URL"] + "/callee"

    def native(self, kind):
        return self.platform.call_function("callee", nuclio_sdk.Event(body={"kind": kind}, method="POST"))

    def http(self, kind):
        return self.session.post(self.url, json={"kind": kind})

    def test_none_is_the_text_None(self):
        response = self.native("none")
        self.assertEqual((response.status_code, response.content_type, response.body), (200, "text/plain", b"None"))
        self.assertEqual(self.http("none").text, "None")

    def test_bytes_come_back_raw(self):
        self.assertEqual(self.native("bytes").body, b"\x00\xffraw")
        self.assertEqual(self.http("bytes").content, b"\x00\xffraw")

    def test_dict_is_json_with_the_sdk_encoder(self):
        response = self.native("dict")
        self.assertEqual(response.content_type, "application/json")
        self.assertEqual(response.body, {"a": [1, 2], "nan": "NaN"})
        self.assertEqual(response.headers["content-type"], "application/json")
        reply = self.http("dict")
        self.assertEqual(reply.headers["Content-Type"], "application/json")
        self.assertEqual(reply.json(), {"a": [1, 2], "nan": "NaN"})

    def test_tuples_set_the_status(self):
        response = self.native("tuple")
        self.assertEqual((response.status_code, response.body), (201, {"created": True}))
        response = self.native("tuple-text")
        self.assertEqual((response.status_code, response.content_type, response.body), (202, "text/plain", b"accepted"))
        self.assertEqual(self.http("tuple").status_code, 201)

    def test_response_keeps_str_headers_only(self):
        # Nuclio decodes the wrapper's JSON into Go values, so an int header is a float64 there,
        # which the HTTP trigger drops (`pkg/processor/trigger/http/trigger.go`); see
        # test_responses for every type
        response = self.native("response")
        self.assertEqual((response.status_code, response.body), (203, {"k": 1}))
        self.assertEqual(response.headers["x-str"], "s")
        self.assertNotIn("x-int", response.headers)
        self.assertNotIn("x-bool", response.headers)
        reply = self.http("response")
        self.assertEqual((reply.status_code, reply.headers["X-Str"], reply.json()), (203, "s", {"k": 1}))
        self.assertNotIn("X-Int", reply.headers)
        self.assertEqual(reply.url, self.url)
        self.assertEqual(reply.encoding, "utf-8")

    def test_callee_exception_is_a_500_and_the_caller_keeps_running(self):
        response = self.native("raise")
        self.assertEqual((response.status_code, response.content_type), (500, "text/plain"))
        self.assertTrue(response.body.startswith(b'Exception caught in handler - "boom": Traceback'), response.body)
        self.assertIn(b"ValueError: boom", response.body)
        reply = self.http("raise")
        self.assertEqual(reply.status_code, 500)
        self.assertTrue(reply.text.startswith('Exception caught in handler - "boom"'))
        self.assertEqual(self.native("dict").status_code, 200)
        self.assertEqual(self.dispatcher.calls["local"], 3)

    def test_caller_event_is_not_mutated_and_callee_gets_a_fresh_event(self):
        caller_event = event("caller", {"kind": "echo", "nested": {"a": 1}}, headers={"X-Custom": "1"},
                             proxy=("127.0.0.1", 1234))
        before = (copy.deepcopy(caller_event.body), dict(caller_event.headers), caller_event.path)
        response = self.platform.call_function("callee", caller_event)
        self.assertEqual((caller_event.body, caller_event.headers, caller_event.path), before)
        seen = response.body
        self.assertEqual(seen["body"], before[0])
        self.assertEqual(seen["ctype"], "application/json")
        self.assertEqual(seen["headers"]["Task-Name"], "callee")
        self.assertEqual(seen["headers"]["X-Fusionizer-Caller"], "caller")
        self.assertEqual(seen["headers"]["X-Custom"], "1")
        self.assertEqual(seen["headers"]["X-Nuclio-Target"], "callee")
        self.assertNotEqual(seen["id"], caller_event.id)
        reply = self.session.post(self.url + "/sub?a=1&b=2", data=b"echo", headers={"Content-Type": "text/x"})
        seen = reply.json()
        self.assertEqual((seen["body"], seen["ctype"], seen["method"]), ("b'echo'", "text/x", "POST"))
        self.assertEqual((seen["path"], seen["fields"]), ("/callee/sub", {"a": "1", "b": "2"}))

    def test_json_body_with_charset_stays_bytes(self):
        reply = self.session.post(self.url, data=b'{"kind": "echo"}',
                                  headers={"Content-Type": "application/json; charset=utf-8"})
        # the callee saw bytes (it decoded them itself), so it answered its default "text"
        self.assertEqual((reply.status_code, reply.text), (200, "text"))
