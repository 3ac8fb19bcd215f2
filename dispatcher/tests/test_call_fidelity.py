"""The in-process `call_function` fast path (`_codec.call_request` and the dispatcher's call plan)
against the SDK's own code on the same call (`call_request` forced to None: the SDK builds the
request with http.client and decodes the answer with `json.loads`, as over HTTP): the callee's
event, the caller's answer and the errors are the same, and neither side's objects reach the
other."""

import json
import sys
import math
import unittest
import unittest.mock

import nuclio_sdk
import nuclio_sdk.json_encoder

from fusionizer_dispatcher import _codec

from .support import ArtifactTestCase

# The callee reports what it saw, and keeps its event and answer for the test to inspect.
SEEN = {"main.py": """
    import nuclio_sdk

    KEPT = {}

    def handler(context, event):
        KEPT["event"] = event
        body = event.body
        answer = {
            "body": repr(body), "type": type(body).__name__, "size": event.size,
            "content_type": event.content_type, "headers": event.headers, "method": event.method,
            "path": event.path, "fields": event.fields, "url": event.url,
            "id": isinstance(event.id, str), "event": sorted(vars(event)),
            "trigger": [event.trigger.kind, event.trigger.name],
        }
        KEPT["answer"] = answer
        return answer
"""}

# The callee answers whatever `OUTPUTS[event.body["case"]]` builds.
ANSWERS = {"main.py": """
    import nuclio_sdk

    KEPT = {}

    class Logged(object):
        def __log__(self):
            return {"logged": 1}

    def _raise():
        raise RuntimeError("callee failed")

    OUTPUTS = {
        "dict": lambda: {"a": [1, 2.5, None, True], "s": "caf\\u00e9 \\u2028"},
        "tuple inside": lambda: {"t": (1, (2, 3))},
        "non-str keys": lambda: {1: "int", 2.5: "float", True: "bool", None: "none", "1": "str"},
        "nan and infinity": lambda: {"nan": float("nan"), "inf": float("inf")},
        "not JSON-able values": lambda: {"set": {1}, "bytes": b"x", "logged": Logged()},
        "str": lambda: "text",
        "bytes": lambda: b"\\x00\\xff",
        "list": lambda: [{"first": 1}, {"second": 2}],
        "empty list": lambda: [],
        "tuple status": lambda: (201, {"created": True}),
        "tuple str": lambda: (202, "accepted"),
        "response": lambda: nuclio_sdk.Response(body={"r": 1}, headers={"X-A": "1", "X-N": 5},
                                                content_type="application/json", status_code=418),
        "response not JSON": lambda: nuclio_sdk.Response(body="{not json", status_code=200,
                                                         content_type="application/x-other"),
        "none": lambda: None,
        "int": lambda: 7,
        "raises": _raise,
    }

    def handler(context, event):
        output = OUTPUTS[event.body["case"]]()
        KEPT["output"] = output
        return output
"""}


def post(body, **kw):
    kw.setdefault("method", "POST")
    return nuclio_sdk.Event(body=body, **kw)


class _Calls(ArtifactTestCase):
    def call(self, dispatcher, event, direct):
        platform = dispatcher.tasks["caller"].context.platform
        if direct:
            self.assertIsNotNone(_codec.call_request("callee", event), "not the direct path")
            return platform.call_function("callee", event)
        with unittest.mock.patch.object(_codec, "call_request", return_value=None):
            return platform.call_function("callee", event)

    def outcome(self, dispatcher, build, direct):
        try:
            response = self.call(dispatcher, build(), direct)
        except Exception as exc:
            return "raised", type(exc), str(exc)
        body = response.body
        if isinstance(body, dict):
            body = repr(_nan_free(body))
        return response.status_code, response.content_type, response.headers, body


def _nan_free(value):
    """`value` with NaN spelled as a string (NaN equals nothing, not even itself)."""
    if isinstance(value, dict):
        return {key: _nan_free(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_free(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def _circular():
    body = {"a": 1}
    body["self"] = body
    return post(body)


# Bodies a caller sends; each is built anew per call.
BODIES = {
    "dict": lambda: post({"x": 2, "y": [1, "\u00e9", None]}),
    "tuple": lambda: post({"t": (1, 2), "nested": {"u": ()}}),
    "non-str keys": lambda: post({1: "a", "1": "b", 2.5: "c", True: "d", None: "e"}),
    "nan and infinity": lambda: post({"n": float("nan"), "i": float("-inf")}),
    "big int": lambda: post({"n": 10 ** 40}),
    "lone surrogate": lambda: post({"s": "a\ud800b"}),
    "bytes": lambda: post(b"\x00\xff", content_type="application/octet-stream"),
    "JSON bytes": lambda: post(b'{"a": 1}', content_type="application/json"),
    "bad JSON bytes": lambda: post(b'{"a": ', content_type="application/json"),
    "str": lambda: post("caf\u00e9", content_type="text/x"),
    "JSON str": lambda: post('{"a": [1]}', content_type="application/json"),
    "None": lambda: post(None, method="GET"),
    "headers": lambda: post({"a": 1}, headers={"X-A": "1", "content-type": "text/x",
                                                "Content-Length": "3"}),
    "not JSON-able": lambda: post({"o": object()}),
    "not JSON-able key": lambda: post({(1, 2): "tuple key"}),
    "circular": _circular,
}


class CalleeSeesWhatHttpGivesTest(_Calls):
    def test_every_body_direct_and_through_the_sdk(self):
        dispatcher = self.load({"caller": SEEN, "callee": SEEN})
        for label, build in BODIES.items():
            with self.subTest(label):
                direct = self.outcome(dispatcher, build, True)
                sdk = self.outcome(dispatcher, build, False)
                self.assertEqual(direct, sdk)

    def test_the_callee_event_is_a_plain_sdk_event_with_a_fresh_id(self):
        dispatcher = self.load({"caller": SEEN, "callee": SEEN})
        kept = dispatcher.tasks["callee"].handler.__globals__["KEPT"]
        sent = post({"x": 1})
        sent.id = "the-callers-id"
        self.call(dispatcher, sent, True)
        first = kept["event"]
        self.call(dispatcher, sent, True)
        second = kept["event"]
        self.assertIs(type(first), nuclio_sdk.Event)
        self.assertEqual(list(vars(first)), list(vars(nuclio_sdk.Event())))
        self.assertNotEqual(first.id, second.id)
        self.assertNotEqual(first.id, "the-callers-id")
        self.assertIsNot(first.headers, second.headers)
        self.assertIsNot(first.fields, second.fields)


class NothingSharedTest(_Calls):
    def setUp(self):
        super(NothingSharedTest, self).setUp()
        self.dispatcher = self.load({"caller": SEEN, "callee": SEEN})
        self.kept = self.dispatcher.tasks["callee"].handler.__globals__["KEPT"]

    def test_the_callers_body_changed_after_the_call_does_not_reach_the_callee(self):
        body = {"list": [1], "inner": {"a": 1}}
        self.call(self.dispatcher, post(body), True)
        body["list"].append(2)
        body["inner"]["b"] = 2
        self.assertEqual(self.kept["event"].body, {"list": [1], "inner": {"a": 1}})
        self.assertIsNot(self.kept["event"].body, body)

    def test_the_callee_changing_its_body_does_not_reach_the_caller(self):
        body = {"list": [1]}
        self.call(self.dispatcher, post(body), True)
        self.kept["event"].body["list"].append(2)
        self.kept["event"].headers["X-New"] = "1"
        self.assertEqual(body, {"list": [1]})
        again = self.call(self.dispatcher, post({"list": [1]}), True)
        self.assertNotIn("X-New", again.body["headers"])

    def test_the_answer_is_a_copy_of_what_the_callee_returned(self):
        response = self.call(self.dispatcher, post({"x": 1}), True)
        answer = self.kept["answer"]
        self.assertEqual(response.body["type"], "dict")
        self.assertIsNot(response.body, answer)
        response.body["headers"]["X-Changed"] = "1"
        self.assertNotIn("X-Changed", answer["headers"])
        answer["method"] = "CHANGED"
        self.assertEqual(response.body["method"], "POST")


class CallerGetsWhatTheSdkDecodesTest(_Calls):
    def test_every_kind_of_answer_direct_and_through_the_sdk(self):
        dispatcher = self.load({"caller": SEEN, "callee": ANSWERS})
        cases = dispatcher.tasks["callee"].handler.__globals__["OUTPUTS"]
        for case in cases:
            with self.subTest(case):
                build = lambda: post({"case": case})  # noqa: E731
                direct = self.outcome(dispatcher, build, True)
                sdk = self.outcome(dispatcher, build, False)
                self.assertEqual(direct, sdk)

    def test_statuses_and_errors_are_returned_not_raised(self):
        dispatcher = self.load({"caller": SEEN, "callee": ANSWERS})
        response = self.call(dispatcher, post({"case": "raises"}), True)
        self.assertEqual(response.status_code, 500)
        self.assertTrue(response.body.startswith(b'Exception caught in handler - "callee failed"'))
        response = self.call(dispatcher, post({"case": "response"}), True)
        self.assertEqual((response.status_code, response.body), (418, {"r": 1}))
        self.assertEqual(response.headers["x-a"], "1")
        self.assertNotIn("x-n", response.headers)

    def test_the_answer_is_not_the_callees_object(self):
        dispatcher = self.load({"caller": SEEN, "callee": ANSWERS})
        kept = dispatcher.tasks["callee"].handler.__globals__["KEPT"]
        response = self.call(dispatcher, post({"case": "dict"}), True)
        self.assertIsNot(response.body, kept["output"])
        response.body["a"].append("changed")
        self.assertEqual(kept["output"]["a"], [1, 2.5, None, True])


class CodecShortcutsTest(unittest.TestCase):
    """`_codec.dumps`, `_codec._ENCODE` and `_codec.loads_exact` against what they stand for."""

    VALUES = [
        {"a": [1, 2.5, None, True, False], "é": "\u2028\ud800", 1: (), None: {}, 1.5: [[]]},
        "s", 10 ** 40, -0.0, 1e300, [], {}, None, float("nan"), {"n": float("-inf")},
    ]

    def outcome(self, function, value):
        try:
            return function(value)
        except Exception as exc:
            return type(exc), str(exc)

    def test_dumps_is_json_dumps_even_after_errors(self):
        circular = {}
        circular["self"] = circular
        for value in self.VALUES + [{"o": object()}, circular, {(1,): 1}] + self.VALUES:
            with self.subTest(value=repr(value)[:40]):
                self.assertEqual(self.outcome(_codec.dumps, value),
                                 self.outcome(json.dumps, value))

    def test_encode_is_the_sdk_encoder(self):
        sdk = nuclio_sdk.json_encoder.Encoder().encode
        circular = [1]
        circular.append({"back": circular})
        deep = []
        for _ in range(sys.getrecursionlimit() + 10):
            deep = [deep]
        values = self.VALUES + [{"set": {1}, "bytes": b"x"}, circular, deep] + self.VALUES
        for index, value in enumerate(values):
            with self.subTest(value=index):
                self.assertEqual(self.outcome(_codec._ENCODE, value), self.outcome(sdk, value))

    def test_a_remembered_text_still_decodes_to_a_value_of_its_own(self):
        for text in ('{"x": 2, "y": "z"}', '[1, 2.5, null, true]', '{"n": {"m": 1}}', '[[1]]',
                     '"s"', '7', '{}', '[]'):
            with self.subTest(text=text):
                first = _codec.loads_exact(text)
                if isinstance(first, dict):
                    first["added"] = 1
                    for value in first.values():
                        if isinstance(value, dict):
                            value["inner"] = 2
                elif isinstance(first, list):
                    first.append("added")
                    for value in first:
                        if isinstance(value, list):
                            value.append(3)
                for _ in range(2):
                    again = _codec.loads_exact(text)
                    self.assertEqual(again, json.loads(text))
                    self.assertEqual(type(again), type(json.loads(text)))
                    if isinstance(again, (dict, list)):
                        self.assertIsNot(again, first)

    def test_the_remembered_texts_are_bounded(self):
        for index in range(_codec._DECODED_LIMIT * 2 + 3):
            self.assertEqual(_codec.loads_exact('{"i": %d}' % index), {"i": index})
        self.assertTrue(0 < len(_codec._DECODED) <= _codec._DECODED_LIMIT)
        long_text = json.dumps({"k": "v" * (_codec._DECODED_TEXT + 1)})
        self.assertEqual(_codec.loads_exact(long_text), json.loads(long_text))

    def test_loads_exact_is_json_loads(self):
        texts = [json.dumps(value) for value in self.VALUES if value == value] + [
            " [1] ", "[1] x", "{", "", "NaN", '"\\ud800"', "1e400"]
        for text in texts:
            with self.subTest(text=text):
                mine, theirs = (self.outcome(f, text) for f in (_codec.loads_exact, json.loads))
                self.assertEqual(repr(mine), repr(theirs))


SESSION_TASK = {"main.py": """
    def handler(context, event, requests_session):
        return "ok"
"""}


class CacheBoundsTest(_Calls):
    """Every memo on the call path stays within its bound when calls keep differing, and a call
    past the bound is answered as the first one was."""

    def test_calls_past_every_bound_are_still_answered_exactly(self):
        from fusionizer_dispatcher import dispatcher as module

        dispatcher = self.load({"caller": SEEN, "callee": SEEN})
        limits = {
            "call plans": (lambda: dispatcher._call_plans, module._MAX_PLANS),
            "request header pairs": (lambda: _codec._REQUEST_PAIRS, _codec._CACHE_LIMIT),
            "decoded texts": (lambda: _codec._DECODED, _codec._DECODED_LIMIT),
        }
        # distinct header sets make distinct request pairs and plans; distinct bodies, texts
        count = max(limit for _, limit in limits.values()) + 10
        for index in range(count):
            event = post({"i": index}, headers={"X-Index": str(index)})
            answer = self.call(dispatcher, event, True).body
            self.assertEqual(answer["body"], repr({"i": index}))
            self.assertEqual(answer["headers"]["X-Index"], str(index))
            for name, (size, limit) in limits.items():
                self.assertLessEqual(len(size()), limit, name)
        for name, (size, limit) in limits.items():
            self.assertGreater(len(size()), 0, name)
        # the first call again, after its plan and texts were dropped
        answer = self.call(dispatcher, post({"i": 0}, headers={"X-Index": "0"}), True).body
        self.assertEqual((answer["body"], answer["headers"]["X-Index"]), (repr({"i": 0}), "0"))


class WarmUpTest(_Calls):
    """`init_context` warms the call paths on a hidden task and leaves nothing of it behind."""

    def test_nothing_of_the_warm_up_is_left(self):
        dispatcher = self.load({"caller": SEEN, "callee": SEEN, "session": SESSION_TASK})
        self.assertEqual(sorted(dispatcher.tasks), ["callee", "caller", "session"])
        self.assertEqual(dispatcher.calls, {"local": 0, "remote": 0})
        self.assertEqual((dispatcher.trace, dispatcher.trace_more), ([], 0))
        self.assertEqual(dispatcher.trailer(), "")
        for key in list(dispatcher._call_plans) + list(dispatcher._request_plans):
            self.assertIn(key[1], dispatcher.tasks)
        # the requests-style task's session is made at init, not on its first event
        self.assertIsNotNone(dispatcher.tasks["session"].session)
        self.call(dispatcher, post({"x": 1}), True)
        self.assertEqual(dispatcher.calls, {"local": 1, "remote": 0})
        self.assertEqual([record[:2] for record in dispatcher.trace], [("caller", "callee")])


class TraceTest(_Calls):
    def test_each_direct_call_is_recorded_with_its_sizes(self):
        dispatcher = self.load({"caller": SEEN, "callee": SEEN})
        dispatcher.trace = []
        response = self.call(dispatcher, post({"x": 1}), True)
        (record,) = dispatcher.trace
        caller, callee, mode, status, _micros, size = record
        self.assertEqual((caller, callee, mode, status), ("caller", "callee", "s", 200))
        self.assertEqual(size, len(b'{"x": 1}') + int(response.headers["content-length"]))
        self.assertRegex(dispatcher.trailer(), r"^caller callee s 200 \d+ \d+$")


if __name__ == "__main__":
    unittest.main()
