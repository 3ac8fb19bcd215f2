"""What the dispatcher reports to the proxy (`_trace`), and in-process asynchronous calls."""

import json
import re
import time

import nuclio_sdk

from fusionizer_dispatcher import _trace

from .support import ArtifactTestCase, CountingServer, event

CALLER = {"main.py": """
    import nuclio_sdk

    def handler(context, event):
        call = nuclio_sdk.Event(body={"n": 1}, method="POST", path="/")
        if event.headers.get("X-Async"):
            answer = context.platform.call_function_async("callee", call)
        else:
            answer = context.platform.call_function("callee", call)
        return {"status": answer.status_code}
"""}

CALLEE = {"main.py": """
    RAN = []

    def handler(context, event):
        RAN.append(event.body)
        return {"ran": len(RAN)}
"""}

DEADLINE = 10.0
RECORD = re.compile(r"^caller callee (s|a) (\d+) (\d+) (\d+)$")



def _module_ran(dispatcher):
    import sys
    handler = dispatcher.tasks["callee"].handler
    return sys.modules[handler.__module__].RAN


def wait_until(check):
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


class TraceTest(ArtifactTestCase):
    def test_a_sync_in_process_call_is_one_record(self):
        dispatcher = self.load({"caller": CALLER, "callee": CALLEE})
        dispatcher.defer_after_response = True
        self.assertEqual(dispatcher.handler(self.context, event("caller")), {"status": 200})
        self.assertEqual(len(dispatcher.trace), 1)
        mode, status, micros, size = RECORD.match(dispatcher.trailer()).groups()
        self.assertEqual((mode, status), ("s", "200"))
        # request {"n": 1} plus response {"ran": 1}
        self.assertEqual(int(size), len(b'{"n": 1}') + len(b'{"ran": 1}'))
        # the next event starts a new trace
        dispatcher.handler(self.context, event("callee", {"n": 2}))
        self.assertEqual(dispatcher.trailer(), "")

    def test_records_past_the_cap_are_counted(self):
        trace = []
        for _ in range(_trace.MAX_RECORDS):
            self.assertTrue(_trace.record(trace, "a", "b", "s", 200, 1, 2))
        self.assertFalse(_trace.record(trace, "a", "b", "s", 200, 1, 2))
        self.assertTrue(_trace.trailer(trace, 3).endswith(",+3"))
        self.assertEqual(_trace.trailer([], 0), "")

    def test_prefer_respond_async_is_read_like_rfc_7240(self):
        self.assertTrue(_trace.prefers_async([("prefer", "wait=5, Respond-Async")]))
        self.assertTrue(_trace.prefers_async([("Prefer", "respond-async; x=1")]))
        self.assertFalse(_trace.prefers_async([("Prefer", "wait=5")]))
        self.assertFalse(_trace.prefers_async([("X-Prefer", "respond-async")]))

    def test_peak_rss_is_sampled_on_linux(self):
        if not _trace.reset_peak_rss():
            self.skipTest("no /proc/self/clear_refs here")
        self.assertGreater(_trace.peak_rss(), 0)


class AsyncInProcessTest(ArtifactTestCase):
    def test_local_an_async_call_runs_after_the_answer(self):
        dispatcher = self.load({"caller": CALLER, "callee": CALLEE})
        dispatcher.defer_after_response = True
        answer = dispatcher.handler(self.context, event("caller", headers={"X-Async": "1"}))
        self.assertEqual(answer, {"status": 202})
        self.assertEqual(_module_ran(dispatcher), [])
        mode, status, _, size = RECORD.match(dispatcher.trailer()).groups()
        self.assertEqual((mode, status, int(size)), ("a", "202", len(b'{"n": 1}')))
        dispatcher.run_deferred()
        self.assertEqual(_module_ran(dispatcher), [{"n": 1}])
        self.assertEqual(len(dispatcher.deferred), 0)

    def test_local_a_full_queue_answers_503(self):
        dispatcher = self.load({"caller": CALLER, "callee": CALLEE})
        dispatcher.defer_after_response = True
        statuses = []
        for _ in range(3):
            dispatcher.handler(self.context, event("caller", headers={"X-Async": "1"}))
        import fusionizer_dispatcher.dispatcher as module
        saved = module.MAX_DEFERRED
        module.MAX_DEFERRED = 3
        self.addCleanup(setattr, module, "MAX_DEFERRED", saved)
        statuses.append(dispatcher.handler(self.context, event("caller", headers={"X-Async": "1"})))
        self.assertEqual(statuses, [{"status": 503}])
        self.assertIn("caller callee a 503", dispatcher.trailer())
        dispatcher.run_deferred()
        self.assertEqual(len(_module_ran(dispatcher)), 3)

    def test_nuclio_an_async_call_runs_on_a_helper_thread_and_reports_in_a_header(self):
        dispatcher = self.load({"caller": CALLER, "callee": CALLEE})
        answer = dispatcher.handler(
            self.context, event("caller", headers={"X-Async": "1"}, proxy=("127.0.0.1", 1))
        )
        # came through the proxy: the answer carries the record as a header
        self.assertIsInstance(answer, nuclio_sdk.Response)
        self.assertEqual(json.loads(answer.body), {"status": 202})
        self.assertRegex(answer.headers["X-Fusionizer-Trace"], r"^caller callee a 202 \d+ \d+$")
        wait_until(lambda: _module_ran(dispatcher) == [{"n": 1}])

    def test_nuclio_without_the_proxy_the_answer_is_untouched(self):
        dispatcher = self.load({"caller": CALLER, "callee": CALLEE})
        self.assertEqual(dispatcher.handler(self.context, event("caller")), {"status": 200})


class TraceparentTest(ArtifactTestCase):
    TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    def test_a_call_through_the_proxy_carries_the_events_trace(self):
        proxy = CountingServer()
        self.addCleanup(proxy.close)
        dispatcher = self.load({"caller": CALLER})
        headers = {"traceparent": self.TRACEPARENT}
        dispatcher.handler(self.context, event("caller", headers=headers, proxy=proxy.address))
        self.assertEqual(len(proxy.requests), 1)
        _, sent, _ = proxy.requests[0]
        self.assertEqual(sent.get("traceparent"), self.TRACEPARENT)
        self.assertEqual(sent.get("X-Fusionizer-Caller"), "caller")
        # without one on the event, none is invented (serve makes the trace id)
        dispatcher.handler(self.context, event("caller", proxy=proxy.address))
        _, sent, _ = proxy.requests[1]
        self.assertIsNone(sent.get("traceparent"))
