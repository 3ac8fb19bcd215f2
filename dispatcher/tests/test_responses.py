"""Response headers whose values are not strings, as Nuclio 1.14 answers them from a Python
handler: the wrapper JSON-encodes the response with the SDK's encoder
(`pkg/processor/runtime/python/py/_nuclio_wrapper.py`, `nuclio_sdk/json_encoder.py`), the
processor decodes it into Go values (`pkg/processor/runtime/rpc/result/result.go`: every number
a float64) and the HTTP trigger sets only `string` values (`pkg/processor/trigger/http/
trigger.go`), streaming a file for `X-nuclio-filestream-path`. Checked on every path: the codec
itself, in-process `call_function` and `requests_session`, and the local worker's R frame."""

import os

import nuclio_sdk

from fusionizer_dispatcher import _codec

from .support import ArtifactTestCase, closed_port

CALLEE = {"main.py": """
    import datetime
    import nuclio_sdk

    class Logged(object):
        def __log__(self):
            return "logged"

    HEADERS = {
        "X-Str": "s", "X-Int": 2, "X-Float": 1.5, "X-Bool": True, "X-None": None,
        "X-List": ["a"], "X-Tuple": ("a",), "X-Dict": {"a": "b"}, "X-Bytes": b"raw",
        "X-Nan": float("nan"), "X-Inf": float("inf"), "X-Neg-Inf": float("-inf"), "X-Set": {1},
        "X-Date": datetime.date(2024, 5, 1), "X-Logged": Logged(), 7: "seven", True: "yes",
        "X-Nuclio-Stream-No-Ack": True,
    }

    def handler(context, event):
        kind = event.body["kind"]
        if kind == "mixed":
            return nuclio_sdk.Response(headers=dict(HEADERS), body={"k": 1}, status_code=203)
        if kind == "no-ack":
            response = nuclio_sdk.Response(body="ok")
            response.ensure_no_ack()
            return response
        if kind == "bad-key":
            return nuclio_sdk.Response(headers={("a", "b"): "v"}, body="unreachable")
        if kind == "surrogate":
            return nuclio_sdk.Response(headers={"X-Lone": "a\\ud800b", "X-Utf8": "caf\\u00e9"}, body="ok")
        if kind == "file":
            headers = {"X-nuclio-filestream-path": event.body["path"], "X-Kept": "k"}
            if event.body.get("delete"):
                headers["X-Nuclio-Filestream-Delete-After-Send"] = 1
            return nuclio_sdk.Response(headers=headers, body="ignored", content_type="image/png",
                                       status_code=201)
        return "text"
"""}

# What a client of Nuclio's HTTP trigger gets for CALLEE's "mixed" headers.
MIXED = {
    "X-Str": "s",
    "X-Bytes": "b'raw'",  # repr(), the encoder's fallback
    "X-Nan": "NaN", "X-Inf": "Infinity", "X-Neg-Inf": "-Infinity",  # the SDK encoder's spelling
    "X-Set": "{1}",
    "X-Date": "datetime.date(2024, 5, 1)",
    "X-Logged": "logged",  # __log__() first
    "7": "seven", "true": "yes",  # JSON object keys
}


class ResponseHeadersTest(ArtifactTestCase):
    def setUp(self):
        super(ResponseHeadersTest, self).setUp()
        os.environ["FUSIONIZER_PROXY_URL"] = "http://127.0.0.1:%d" % closed_port()
        self.addCleanup(os.environ.pop, "FUSIONIZER_PROXY_URL", None)
        self.dispatcher = self.load({"caller": {"main.py": "def handler(c, e):\n    return None\n"},
                                     "callee": CALLEE})
        self.platform = self.dispatcher.tasks["caller"].context.platform
        self.session = self.dispatcher._session(self.dispatcher.tasks["caller"])
        self.url = os.environ["FUSIONIZER_PROXY_URL"] + "/callee"

    def native(self, body):
        return self.platform.call_function("callee", nuclio_sdk.Event(body=body, method="POST"))

    def test_codec_drops_non_strings_and_converts_what_the_encoder_turns_into_strings(self):
        module = __import__(self.dispatcher.tasks["callee"].package + ".main", fromlist=["HEADERS"])
        response = nuclio_sdk.Response(headers=dict(module.HEADERS), body="b")
        status, content_type, headers, body = _codec.encode_output(response)
        self.assertEqual(headers, MIXED)
        self.assertEqual((status, content_type, body), (200, "text/plain", b"b"))

    def test_call_function_sees_the_headers_nuclio_sends(self):
        response = self.native({"kind": "mixed"})
        self.assertEqual((response.status_code, response.body), (203, {"k": 1}))
        expected = {name.lower(): value for name, value in MIXED.items()}
        expected.update({"content-type": "application/json", "content-length": "8"})
        self.assertEqual(response.headers, expected)

    def test_requests_session_sees_the_headers_nuclio_sends(self):
        reply = self.session.post(self.url, json={"kind": "mixed"})
        self.assertEqual((reply.status_code, reply.json()), (203, {"k": 1}))
        self.assertEqual(reply.headers["X-Nan"], "NaN")
        self.assertEqual(reply.headers["X-Bytes"], "b'raw'")
        for dropped in ("X-Int", "X-Float", "X-Bool", "X-None", "X-List", "X-Tuple", "X-Dict"):
            self.assertNotIn(dropped, reply.headers)

    def test_ensure_no_ack_header_is_a_bool_and_never_sent(self):
        response = self.native({"kind": "no-ack"})
        self.assertNotIn("x-nuclio-stream-no-ack", response.headers)
        self.assertEqual(response.body, b"ok")

    def test_a_header_name_json_cannot_encode_is_a_500_like_a_handler_exception(self):
        response = self.native({"kind": "bad-key"})
        self.assertEqual((response.status_code, response.content_type), (500, "text/plain"))
        self.assertTrue(response.body.startswith(b'Exception caught in handler - "keys must be str'),
                        response.body)

    def test_surrogates_become_replacement_characters_and_utf8_arrives_as_latin1(self):
        status, _, headers, _ = _codec.encode_output(
            nuclio_sdk.Response(headers={"X-Lone": "a\ud800b", "X-Utf8": "caf\u00e9"}, body="ok"))
        self.assertEqual(headers, {"X-Lone": "a\ufffdb", "X-Utf8": "caf\u00e9"})
        response = self.native({"kind": "surrogate"})
        self.assertEqual(response.headers["x-lone"], "a\ufffdb".encode("utf-8").decode("latin-1"))
        self.assertEqual(response.headers["x-utf8"], "caf\u00c3\u00a9")
        self.assertEqual(_codec.encode_output("a\ud800b")[3], "a\ufffdb".encode("utf-8"))

    def test_filestream_path_streams_the_file(self):
        path = os.path.join(self.tmp, "out.bin")
        with open(path, "wb") as out:
            out.write(b"\x89PNG...")
        response = self.native({"kind": "file", "path": path})
        self.assertEqual((response.status_code, response.content_type, response.body),
                         (201, "image/png", b"\x89PNG..."))
        self.assertEqual(response.headers["x-kept"], "k")
        self.assertNotIn("x-nuclio-filestream-path", response.headers)
        self.assertTrue(os.path.exists(path))

    def test_filestream_delete_after_send_removes_the_file_whatever_its_value(self):
        path = os.path.join(self.tmp, "once.txt")
        with open(path, "wb") as out:
            out.write(b"once")
        reply = self.session.post(self.url, json={"kind": "file", "path": path, "delete": True})
        self.assertEqual((reply.status_code, reply.content), (201, b"once"))
        self.assertNotIn("X-Nuclio-Filestream-Delete-After-Send", reply.headers)
        self.assertFalse(os.path.exists(path))

    def test_filestream_of_a_missing_file_is_an_empty_404(self):
        response = self.native({"kind": "file", "path": os.path.join(self.tmp, "missing")})
        self.assertEqual((response.status_code, response.body), (404, b""))
        self.assertEqual(response.content_type, "text/plain; charset=utf-8")
        self.assertEqual(response.headers["x-kept"], "k")
