"""A returned list answers as Nuclio >= 1.13.3 answers it: with its first element.

Nuclio's wrapper encodes each element of a returned list as a response of its own and the
processor answers an HTTP event with the first (`_nuclio_wrapper.py` `_encode_entrypoint_output`,
`pkg/processor/runtime/rpc/abstract.go` `ProcessEvent`); an empty list is a 500 with no body.
A task's answer must not change when it is regrouped, so every path of ours does the same. The
conformance suite (`tests/nuclio_runtime/`) checks this against the real wrapper.
"""

import tempfile
import shutil
import unittest

import nuclio_sdk

from fusionizer_dispatcher import _codec, Dispatcher
from tests.support import root_context, write_artifact, event

CALLEE = {"main.py": """
    import nuclio_sdk

    def handler(context, event):
        kind = event.body.decode()
        if kind == "list":
            return [{"first": 1}, {"second": 2}]
        if kind == "strings":
            return ["first", "second"]
        return []
"""}

CALLER = {"main.py": """
    import nuclio_sdk

    def handler(context, event):
        response = context.platform.call_function(
            "callee", nuclio_sdk.Event(body=event.body, content_type="text/plain", method="POST"))
        return 200, {"status": response.status_code, "type": response.content_type,
                     "body": response.body if isinstance(response.body, dict)
                     else response.body.decode()}
"""}


class EncodeListTest(unittest.TestCase):
    def test_first_element_answers(self):
        self.assertEqual(_codec.encode_output([1, 2]), (200, "text/plain", {}, b"1"))
        self.assertEqual(_codec.encode_output([{"a": 1}, {"b": 2}]),
                         (200, "application/json", {}, b'{"a": 1}'))
        self.assertEqual(_codec.encode_output([[1, 2], [3]]),
                         (200, "application/json", {}, b"[1, 2]"))
        self.assertEqual(_codec.encode_output([b"\x00raw", "x"]), (200, "text/plain", {}, b"\x00raw"))
        first = nuclio_sdk.Response(body="r", status_code=201, headers={"X-A": "1"},
                                    content_type="text/x")
        self.assertEqual(_codec.encode_output([first, "second"]), (201, "text/x", {"X-A": "1"}, b"r"))

    def test_empty_list_is_the_processors_500(self):
        self.assertEqual(_codec.encode_output([]), (500, "text/plain; charset=utf-8", {}, b""))


class InProcessListTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="fz-lists-")
        self.addCleanup(shutil.rmtree, self.root, True)
        write_artifact(self.root, {"caller": CALLER, "callee": CALLEE})
        self.dispatcher = Dispatcher("fn", {"caller": "main:handler", "callee": "main:handler"},
                                     self.root)
        self.context, _ = root_context()
        self.dispatcher.init_context(self.context)

    def call(self, kind):
        output = self.dispatcher.handler(self.context, event("caller", body=kind.encode(),
                                                             content_type="text/plain"))
        return output[1]

    def test_a_sibling_returning_a_list_answers_its_first_element(self):
        self.assertEqual(self.call("list"),
                         {"status": 200, "type": "application/json", "body": {"first": 1}})
        self.assertEqual(self.call("strings"), {"status": 200, "type": "text/plain", "body": "first"})
        self.assertEqual(self.call("empty"),
                         {"status": 500, "type": "text/plain; charset=utf-8", "body": ""})


if __name__ == "__main__":
    unittest.main()
