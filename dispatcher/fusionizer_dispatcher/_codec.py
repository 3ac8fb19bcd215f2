"""What travels between a caller and a callee: Nuclio's rules for events and responses.

An in-process call must look exactly like the HTTP call it replaces, so every conversion here is
the one Nuclio itself performs, each cited beside it:

- the request a task's `call_function` sends is the one `nuclio_sdk.Platform.call_function`
  builds (`nuclio_sdk/platform.py`), with http.client's own validation and errors;
- the callee's event is the one Nuclio's HTTP trigger builds from the request the proxy
  forwards (`pkg/processor/trigger/http/event.go`): canonical header names, a percent-decoded
  path, query fields, a body that is bytes or `json.loads`ed only for exactly
  `application/json` (`nuclio_sdk/event.py`);
- the callee's return value is encoded by `nuclio_sdk.Response.from_entrypoint_output` with the
  SDK's JSON encoder, as Nuclio's wrapper does (`pkg/processor/runtime/python/py/
  _nuclio_wrapper.py`), and its headers reach the client as the HTTP trigger sets them
  (`response_headers`);
- `call_function` hands back lowercased headers and parses the body only for exactly
  `application/json` (`nuclio_sdk/platform.py`).

Only APIs present in both nuclio-sdk 0.5.13 (Nuclio 1.14 images) and 0.6.x are used.
"""

import base64
import datetime
import http.client
import itertools
import json
import json.decoder
import json.encoder
import os
import re
import socket
import sys
import time
import traceback
import urllib.parse

import nuclio_sdk
import nuclio_sdk.json_encoder

from . import _contract

# Bound at import, before any task code runs: a task that patches `json.loads`/`json.dumps` in
# this shared process changes its own calls, not the dispatcher's (docs/architecture.md, "What
# fused tasks share").
_loads = json.loads
_dumps = json.dumps
_SDK_ENCODER = nuclio_sdk.json_encoder.Encoder()
_HANDLER_ERROR = 'Exception caught in handler - "{0}": {1}'
# handler results that are never awaitable (exact types): skips `inspect.isawaitable`'s ABC check
PLAIN_OUTPUTS = frozenset(
    (dict, list, str, bytes, tuple, int, float, bool, type(None), nuclio_sdk.Response)
)
_CANONICAL = {}
_CACHE_LIMIT = 4096


def _c_encoder(reference, allow_nan=None, fall_back_on=RecursionError):
    """`reference.encode` (a `json.JSONEncoder` without indent) as a call of the C encoder it
    ends in, without `encode`'s and `iterencode`'s Python frames; None when there is no C
    encoder. `allow_nan` overrides the reference's; a value on which the C encoder raises
    `fall_back_on` goes to `reference.encode`.

    The C encoder is made once, without the circular-reference markers `iterencode` gives it:
    without them it keeps no state between calls, so threads share it. A value the markers
    would stop (a container holding itself) makes it recurse instead until `RecursionError`,
    and the value then goes to `reference.encode`, which raises its own error ("Circular
    reference detected", or its own `RecursionError` for a value nested too deeply); every
    value without a cycle encodes to the same text with or without the markers.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or reference.indent is not None:
        return None
    string = json.encoder.encode_basestring_ascii if reference.ensure_ascii else json.encoder.encode_basestring
    encoder = make(
        None, reference.default, string, None, reference.key_separator,
        reference.item_separator, reference.sort_keys, reference.skipkeys,
        reference.allow_nan if allow_nan is None else allow_nan,
    )
    fallback = reference.encode
    join = "".join

    def encode(value):
        try:
            return join(encoder(value, 0))
        except fall_back_on:
            return fallback(value)

    return encode


# A value of every kind JSON encodes, to prove a shortcut gives the reference's text.
_PROBE = {"s": "\u00e9\u2028\"\\", "i": [1, -2, 10 ** 30, True, False, None], "f": 0.1, 2: 1e300,
          1.5: (), "o": {}, None: [[{}]], False: "t"}


def _proved(shortcut, reference, probes=(_PROBE, "s\u00e9", 1, None, [])):
    """`shortcut` when it gives `reference`'s text for the probes, else `reference`."""
    if shortcut is None:
        return reference
    try:
        if all(shortcut(probe) == reference(probe) for probe in probes):
            return shortcut
    except Exception:
        pass
    return reference


def _encoder(sdk):
    """The SDK encoder's output through the C encoder, when that is proved equal.

    The SDK's `Encoder` re-implements `iterencode` in Python only to spell non-finite floats as
    the strings `"NaN"`/`"Infinity"`; for every other value it yields what `json.JSONEncoder`
    with the same settings yields. The C encoder with `allow_nan=False` raises `ValueError` on
    exactly those floats, so those values (and those with a cycle, see `_c_encoder`) go to the
    SDK's own encoder, and the text is byte-identical always.
    """
    strict = _c_encoder(sdk, allow_nan=False, fall_back_on=(ValueError, RecursionError))
    return _proved(strict, sdk.encode)


# `json.dumps(value)` with its default settings (what the SDK's `call_function` sends for a dict
# body), straight through the C encoder when that is proved to give the same text.
dumps = _proved(_c_encoder(json.JSONEncoder()), _dumps)


# Texts `loads_exact` remembers the value of: at most this many, each at most this long.
_DECODED_LIMIT = 1024
_DECODED_TEXT = 512
# Values whose copy by `dict.copy`/`list.copy` shares nothing mutable with the original.
_SCALARS = frozenset((str, int, float, bool, type(None)))
# text -> (value, its copy function or None)
_DECODED = {}


def _scanner():
    """`json.loads(text)` for a str: the decoder's own scanner called directly (`json.loads` ->
    `JSONDecoder.decode` -> `raw_decode` -> `scan_once`) when the text is one JSON value with
    no blanks around it, as an encoder writes it; anything else (blanks, trailing data, an
    error) goes to `json.loads` itself, for its answer or its error.

    Tasks send the same small documents again and again (the same arguments, the same answer
    shape), so the value of a short text is remembered when a shallow copy of it is a complete
    one: a scalar, or a dict or list of scalars. A text seen before then costs a dictionary
    lookup and a `copy()`, and every caller still gets a value of its own, as from `json.loads`
    (no container is shared; the scalars in it are immutable). Nested values are decoded each
    time. At most `_DECODED_LIMIT` texts of at most `_DECODED_TEXT` characters are kept (the
    table is emptied when full)."""
    scan_once = json.decoder.JSONDecoder().scan_once
    remembered = _DECODED
    scalars = _SCALARS

    def scan(text):
        hit = remembered.get(text)
        if hit is not None:
            value, copy = hit
            return value if copy is None else copy(value)
        try:
            value, end = scan_once(text, 0)
        except (StopIteration, ValueError):
            return _loads(text)
        if end != len(text):
            return _loads(text)
        if len(text) <= _DECODED_TEXT:
            kind = type(value)
            if kind is dict:
                if all(type(item) in scalars for item in value.values()):
                    _remember_decoded(remembered, text, (dict(value), dict.copy))
            elif kind is list:
                if all(type(item) in scalars for item in value):
                    _remember_decoded(remembered, text, (list(value), list.copy))
            elif kind in scalars:
                _remember_decoded(remembered, text, (value, None))
        return value

    return scan


def _remember_decoded(remembered, text, entry):
    if len(remembered) >= _DECODED_LIMIT:
        remembered.clear()
    remembered[text] = entry


loads_exact = _scanner()
_ENCODE = _encoder(_SDK_ENCODER)


def canonical_header(name):
    """`content-type` -> `Content-Type`, as Nuclio's HTTP trigger (fasthttp) presents names."""
    canonical = _CANONICAL.get(name)
    if canonical is None:
        canonical = "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))
        if len(_CANONICAL) < _CACHE_LIMIT:
            _CANONICAL[name] = canonical
    return canonical


_ADDRESS = _contract.HEADER_SERVER_ADDRESS.lower()
_PORT = _contract.HEADER_SERVER_PORT.lower()


def header_value(headers, name):
    """`headers[name]` as `Event.get_header` finds it (the first name equal ignoring case;
    `nuclio_sdk/event.py`), trying the exact spelling first; None when absent.

    Also reads events whose strings arrive undecoded (the wrapper without
    `--decode-event-strings`: bytes names and values) and cron events, whose headers are the
    trigger's `attributes.event.headers` values as written (`pkg/processor/trigger/cron/
    event.go`): a non-string value is read as its text.
    """
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        for key, candidate in headers.items():
            if type(key) is bytes:
                key = key.decode("utf-8", "replace")
            if type(key) is str and key.lower() == lowered:
                value = candidate
                break
        else:
            return None
    if type(value) is str:
        return value
    if type(value) is bytes:
        return value.decode("utf-8", "replace")
    return None if value is None else str(value)


def proxy_headers(headers):
    """(`Fusionizer-Server-Address`, `Fusionizer-Server-Port`) as `Event.get_header` finds each
    (the first name equal ignoring case), in one pass."""
    host = port = None
    found_host = found_port = False
    for key, value in headers.items():
        lowered = key.lower()
        if lowered == _ADDRESS:
            if not found_host:
                host, found_host = value, True
                if found_port:
                    break
        elif lowered == _PORT:
            if not found_port:
                port, found_port = value, True
                if found_host:
                    break
    return host, port


def decode_body(body, content_type):
    """Nuclio's body rule: JSON only for exactly `application/json`, else the raw bytes."""
    if content_type == "application/json":
        try:
            return _loads(body.decode("utf-8"))
        except Exception as exc:
            sys.stderr.write("Failed deserializing json body, error message: {0}\n".format(exc))
    return body


_TIMESTAMPS = {}


def utc_timestamp(seconds):
    """`datetime.utcfromtimestamp(seconds)` without its deprecation warning on Python 3.12+."""
    stamp = _TIMESTAMPS.get(seconds)
    if stamp is None:
        stamp = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)
        if len(_TIMESTAMPS) >= 64:
            _TIMESTAMPS.clear()
        _TIMESTAMPS[seconds] = stamp
    return stamp


# Event ids need to be unique, not unpredictable: the first 80 bits of an id are drawn once per
# process from the OS (again in a forked child), the last 48 count up from a random start, so an
# id costs no system call (`uuid.uuid4` makes one, ~1 µs, more on a cold CPU cache) and no
# 128-bit arithmetic. Ids repeat in one process only after 2**48 of them.
_ID_MASK = (1 << 48) - 1


def _seed_ids():
    global _ID_PREFIX, _ID_NEXT, _ID_BLOCK
    number = int.from_bytes(os.urandom(16), "big")
    number = (number & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    number = (number & ~(0xF000 << 64)) | (4 << 76)  # version 4
    text = "%032x" % number
    _ID_PREFIX = "{0}-{1}-{2}-{3}-".format(text[:8], text[8:12], text[12:16], text[16:20])
    _ID_NEXT = itertools.count(number & _ID_MASK).__next__
    _ID_BLOCK = (None, None)


_ID_PREFIX = _ID_NEXT = None
_seed_ids()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_seed_ids)


# The last 3 hex digits of an id from a table, the 9 before them formatted once per 4,096 ids
# (per block of the counter: a thread that takes the first id of a new block formats its own,
# so no thread pairs a block's digits with another block's).
_ID_LOW = tuple("%03x" % low for low in range(4096))
_ID_BLOCK = (None, None)


def uuid4_string():
    """A version-4 UUID in `str(uuid.uuid4())`'s form, without building a `UUID` object: the
    process's prefix and the counter's next value in 12 hex digits."""
    global _ID_BLOCK
    number = _ID_NEXT()
    block = number >> 12
    cached = _ID_BLOCK
    if cached[0] != block:
        cached = _ID_BLOCK = (block, _ID_PREFIX + "%09x" % (block & _ID_BLOCK_MASK))
    return cached[1] + _ID_LOW[number & 0xFFF]


_ID_BLOCK_MASK = _ID_MASK >> 12


def _event_maker():
    """A function building `nuclio_sdk.Event(**kwargs)` for the keywords `new_event` passes, as
    the instance `Event.__init__` makes: the same attributes in the same order. It fills the
    instance's `__dict__` from a copy of a default event's, which skips the keyword call of 19
    parameters; used only when the SDK's `Event` is a plain class whose default event holds no
    mutable value besides those `new_event` replaces (true of nuclio-sdk 0.5 and 0.6), else the
    constructor."""
    event_class = nuclio_sdk.Event
    given = ("body", "content_type", "trigger", "fields", "headers", "id", "method", "path", "size",
             "timestamp", "url")
    try:
        template = dict(vars(event_class()))
        plain = (
            "__slots__" not in vars(event_class)
            and type(event_class).__call__ is type.__call__
            and all(name in template for name in given)
            and all(
                name in given or value is None or type(value) in (bool, int, str)
                for name, value in template.items()
            )
        )
    except Exception:
        plain = False
    if not plain:
        def make(body, content_type, trigger, fields, headers, _id, method, path, size, timestamp, url):
            return event_class(
                body=body, content_type=content_type, trigger=trigger, fields=fields,
                headers=headers, _id=_id, method=method, path=path, size=size,
                timestamp=timestamp, url=url,
            )
        return make
    allocate = object.__new__

    def make(body, content_type, trigger, fields, headers, _id, method, path, size, timestamp, url):
        # what `Event.__init__` does with these (`nuclio_sdk/event.py`)
        state = template.copy()
        state["body"] = body
        state["content_type"] = content_type
        state["trigger"] = trigger or nuclio_sdk.TriggerInfo()
        state["fields"] = fields or {}
        state["headers"] = headers or {}
        state["id"] = _id
        state["method"] = method
        state["path"] = path or "/"
        state["size"] = size
        state["timestamp"] = timestamp or 0
        state["url"] = url
        event = allocate(event_class)
        event.__dict__ = state
        return event

    return make


_make_event = _event_maker()


def new_event(body, content_type, headers, method, path, fields, trigger, text=None):
    """A fresh `nuclio_sdk.Event` as the callee's processor would build it from an HTTP request.

    `text`, when given, is `body` as text (the JSON `call_request` wrote): for exactly
    `application/json` it is decoded without going through the bytes again."""
    if text is not None and content_type == "application/json":
        decoded = loads_exact(text)
    else:
        decoded = decode_body(body, content_type)
    seconds = int(_time())
    stamp = _TIMESTAMPS.get(seconds) or utc_timestamp(seconds)
    return _make_event(
        decoded, content_type, trigger, fields, headers,
        uuid4_string(), method, path, len(body), stamp, "",
    )


_time = time.time


def encode_output(output):
    """Encode a handler's return value exactly as Nuclio answers it on its HTTP trigger.

    Returns (status_code, content_type, headers, body bytes). The wrapper's base64 body encoding
    (used for `bytes` results) is undone, as the processor does before answering; headers are
    `response_headers`' (which raises, as the wrapper's encoding does, for a header name JSON
    cannot encode: the caller answers that as a handler exception); a
    `X-nuclio-filestream-path` header streams that file as the body (`file_response`).
    """
    kind = type(output)
    if kind is bytes:
        return 200, "text/plain", {}, output
    if kind is str:
        return 200, "text/plain", {}, _utf8(output)
    if kind is dict:
        # `Response.from_entrypoint_output` of a dict: the SDK encoder's JSON, 200, no headers
        return 200, "application/json", {}, _utf8(_ENCODE(output))
    if isinstance(output, list):
        return _encode_list(output)
    return _answer(nuclio_sdk.Response.from_entrypoint_output(_ENCODE, output))


def encode_output_text(output):
    """`encode_output(output)` plus, last, the body as JSON text when it is the SDK encoder's
    JSON of a dict (which `sdk_response` then decodes without the bytes), else None."""
    if type(output) is dict:
        text = _ENCODE(output)
        try:
            body = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (`_utf8`)
            body = _utf8(text)
        return 200, "application/json", {}, body, text
    return encode_output(output) + (None,)


def _encode_list(output):
    """A returned list answers with its FIRST element, as Nuclio >= 1.13.3 does.

    The wrapper takes a list for a batch: it encodes each element as a response of its own
    (`pkg/processor/runtime/python/py/_nuclio_wrapper.py`, `_encode_entrypoint_output`), and the
    processor reads that array (`pkg/processor/runtime/rpc/result/result.go`) and answers an
    HTTP event with `Results[0]` (`pkg/processor/runtime/rpc/abstract.go`, `ProcessEvent`). So
    `[1, 2]` answers `1` (text/plain), `[{"a": 1}]` answers `{"a": 1}`. Every element is still
    encoded, so one the wrapper cannot encode fails the event as it does there.

    An empty list makes `Results[0]` panic; the HTTP trigger recovers it as a failed submit
    (`pkg/processor/trigger/trigger.go`, `HandleSubmitPanic`) and answers 500 with no body and
    fasthttp's default content type. (On Nuclio that panic also never releases the worker; here
    the worker stays usable: see docs/runtime.md.)
    """
    responses = [nuclio_sdk.Response.from_entrypoint_output(_ENCODE, item) for item in output]
    _ENCODE(responses)
    if not responses:
        return 500, _FASTHTTP_CONTENT_TYPE, {}, b""
    return _answer(responses[0])


def _answer(response):
    """(status, content type, headers, body bytes) for one encoded response dict."""
    body = response["body"]
    if response.get("body_encoding") == "base64":
        body = base64.b64decode(body)
    else:
        body = _utf8(body)
    status = response["status_code"]
    content_type = response["content_type"]
    headers, path, delete = response_headers(response["headers"])
    if path is not None:
        status, content_type, body = file_response(path, delete, status, content_type)
    return status, content_type, headers, body


# Go's JSON decoder turns a lone UTF-16 surrogate into U+FFFD (encoding/json), where Python
# keeps it; the processor decodes every string of the wrapper's response that way
# (`pkg/processor/runtime/rpc/result/result.go`).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _utf8(text):
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")


_FILESTREAM_PATH = "x-nuclio-filestream-path"
_FILESTREAM_DELETE = "x-nuclio-filestream-delete-after-send"


def response_headers(headers):
    """A handler's response headers as Nuclio 1.14's HTTP trigger answers with them.

    Returns (headers, filestream path or None, delete the file after sending). Each step is
    Nuclio's:

    - the wrapper JSON-encodes the whole response with the SDK's encoder
      (`pkg/processor/runtime/python/py/_nuclio_wrapper.py`, `_encode_entrypoint_output`;
      `nuclio_sdk/json_encoder.py`): a name that is not str/int/float/bool/None raises, and
      the wrapper answers that as an exception in the handler (500); int/float/bool/None names
      become their JSON text (`1` -> "1", `True` -> "true"); a value JSON cannot encode becomes
      its `__log__()`, else `repr()`, else `str()`, so bytes, sets, datetimes and other objects
      arrive as strings; NaN and the infinities become "NaN", "Infinity", "-Infinity";
    - the processor decodes that JSON into a Go `map[string]interface{}`
      (`pkg/processor/runtime/rpc/result/result.go`): numbers become float64, lone surrogates
      U+FFFD, and of names equal after encoding the last one wins;
    - the HTTP trigger (`pkg/processor/trigger/http/trigger.go`, `case nuclio.Response`) sets a
      header only from a `string`; its `case int` never matches a decoded number, so ints,
      floats, bools, None, lists and dicts are dropped silently. `X-nuclio-filestream-path` (a
      string) and `X-nuclio-filestream-delete-after-send` (any value), matched ignoring case,
      are never sent: they make the trigger stream a file as the body.
    """
    if not headers:
        return {}, None, False
    if type(headers) is dict:
        for name, value in headers.items():
            if type(name) is not str or type(value) is not str or not value.isascii():
                break
        else:
            # every value is an ASCII str: the JSON round trip gives back equal strings
            return _trigger_headers(headers)
    decoded = _loads(_ENCODE(headers))
    if type(decoded) is not dict:
        return {}, None, False
    return _trigger_headers(decoded)


def _trigger_headers(decoded):
    """The string headers the HTTP trigger sets, and its two file-streaming headers."""
    out = {}
    path = None
    delete = False
    for name, value in decoded.items():
        lowered = name.lower()
        if lowered == _FILESTREAM_DELETE:
            delete = True
        elif type(value) is str:
            if not value.isascii():
                value = _LONE_SURROGATE.sub("\ufffd", value)
            if lowered == _FILESTREAM_PATH:
                path = value
            else:
                out[name] = value
    return out, path, delete


# fasthttp's Content-Type for a response that sets none
_FASTHTTP_CONTENT_TYPE = "text/plain; charset=utf-8"


def file_response(path, delete, status, content_type):
    """(status, content type, body) when a response names a file to stream.

    As the HTTP trigger does (`pkg/processor/trigger/http/trigger.go`,
    `pkg/processor/trigger/http/fileresponse.go`): the file's bytes are the body, with the
    response's status and content type; a missing file is a 404 and any other failure to open
    it a 500, both with an empty body and fasthttp's default content type; with
    `delete`, the file is removed once sent (a failure to remove it is ignored, as Nuclio only
    logs it).
    """
    try:
        with open(path, "rb") as stream:
            body = stream.read()
    except FileNotFoundError:
        return 404, _FASTHTTP_CONTENT_TYPE, b""
    except OSError:
        return 500, _FASTHTTP_CONTENT_TYPE, b""
    if delete:
        try:
            os.remove(path)
        except OSError:
            pass
    return status, content_type, body


def error_output(exc):
    """The 500 response Nuclio's wrapper sends when a handler raises (call inside `except`)."""
    message = _HANDLER_ERROR.format(exc, traceback.format_exc())
    return 500, "text/plain", {}, message.encode("utf-8")


_WIRE_DROPPED = frozenset(("content-type", "content-length"))


def wire_headers(content_type, headers, body):
    """Response headers as the calling task receives them from Nuclio's HTTP trigger through the
    proxy.

    `headers` are `response_headers`' (strings only); the trigger's own Content-Type and
    Content-Length replace any spelling of them. The proxy answers with a value only when it
    holds no control character (`src/serve/http/mod.rs`, `HeaderValue::from_str`), as UTF-8 bytes,
    which http.client on the calling side reads as Latin-1.
    """
    out = {}
    for name, value in headers.items():
        if name.lower() in _WIRE_DROPPED:
            continue
        if not value.isprintable() and _CONTROL.search(value):
            continue
        if not value.isascii():
            value = value.encode("utf-8").decode("latin-1")
        out[name] = value
    out["Content-Type"] = content_type
    out["Content-Length"] = str(len(body))
    return out


# bytes `HeaderValue` refuses (the `http` crate's `is_valid`: below 32 except tab, and 127)
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def sdk_response(status, headers, body, text=None):
    """What `nuclio_sdk.Platform.call_function` returns for an HTTP answer
    (`nuclio_sdk/platform.py`: lowercased names, JSON parsed only for exactly
    `application/json`). `text`, when given, is `body` as the JSON text the SDK encoder wrote,
    decoded as `json.loads(body)` would, without the bytes."""
    lowered = {name.lower(): value for name, value in headers.items()}
    content_type = lowered.get("content-type", "text/plain")
    if content_type == "application/json":
        body = _loads(body) if text is None else loads_exact(text)
    return _make_response(lowered, body, content_type, status)


def plain_sdk_response(status, content_type, body, text=None):
    """`sdk_response(status, wire_headers(content_type, {}, body), body, text)`: the SDK's
    answer to a response without headers of its own, in one step."""
    headers = {"content-type": content_type, "content-length": str(len(body))}
    if content_type == "application/json":
        body = _loads(body) if text is None else loads_exact(text)
    return _make_response(headers, body, content_type, status)


def _response_maker():
    """A function building `nuclio_sdk.Response(headers=, body=, content_type=, status_code=)`
    as the instance `Response.__init__` makes, by filling its `__dict__` directly, when the SDK's
    `Response` is a plain class whose `__init__` sets exactly these attributes in this order
    (`headers`, `body`, `status_code`, `content_type`, `event_id`: `nuclio_sdk/response.py` of
    nuclio-sdk 0.5 and 0.6), else the constructor."""
    response_class = nuclio_sdk.Response
    expected = [("headers", {}), ("body", None), ("status_code", 200),
                ("content_type", "text/plain"), ("event_id", None)]
    try:
        plain = (
            "__slots__" not in vars(response_class)
            and type(response_class).__call__ is type.__call__
            and list(vars(response_class()).items()) == expected
        )
    except Exception:
        plain = False
    if not plain:
        def make(headers, body, content_type, status):
            return response_class(
                headers=headers, body=body, content_type=content_type, status_code=status
            )
        return make
    allocate = object.__new__

    def make(headers, body, content_type, status):
        response = allocate(response_class)
        response.__dict__ = {
            "headers": headers or {}, "body": body, "status_code": status,
            "content_type": content_type or "text/plain", "event_id": None,
        }
        return response

    return make


_make_response = _response_maker()


# ------------------------------------------------------------------ requests to a sibling

# http.client's own checks, and what the proxy forwards, are both satisfied by these; anything
# else takes the slow path, where http.client itself builds the request.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_VISIBLE = re.compile(r"[\t\x20-\x7e]*\Z")
_PATH_CHARS = re.compile(r"[\x21-\x7e]*\Z")
_CLEAN_METHODS = set()
_CLEAN_PATHS = set()
_ACCEPT_ENCODING = "accept-encoding"
_IDENTITY = ("Accept-Encoding", "identity")
_BODY_FRAMING = frozenset(("content-length", "transfer-encoding"))


def _remember(cache, key):
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache.add(key)


def call_request(function_name, event):
    """(method, body bytes, header pairs, JSON text) `nuclio_sdk.Platform.call_function(
    function_name, event)` sends, computed directly for a plain event; None for anything unusual.

    The SDK (`nuclio_sdk/platform.py`) sends `event.method` to `event.path`; a dict body as
    `json.dumps` with `Content-Type: application/json`, any other body raw with
    `event.content_type or "text/plain"`; the event's headers with `Content-Type` and
    `X-Nuclio-Target` (the event's own, else the function name) set and `Content-Length`
    popped, exact spellings; http.client (`http.client.HTTPConnection.request`) adds `Host`,
    `Accept-Encoding: identity` unless some spelling of it is there, and the body's framing.
    The pairs (a tuple) are those the proxy reads, less `Host` and the framing, which it drops.
    The JSON text is the dict body's `json.dumps` (so that the callee's decode can skip the
    bytes), else None.

    None means: let the SDK's own code run on an `InProcessConnection`, which raises exactly its
    errors (a missing method is http.client's TypeError, a non-Latin-1 str body its
    UnicodeEncodeError, ...). So this only takes events it can prove http.client sends as
    computed here: an exact `nuclio_sdk.Event` with a token method, a printable ASCII path, str
    header names that are tokens with visible-ASCII str values, and a dict, bytes, Latin-1 str
    or None body.
    """
    if type(event) is not nuclio_sdk.Event:
        return None
    method = event.method
    if method not in _CLEAN_METHODS:
        if type(method) is not str or not _TOKEN.match(method):
            return None
        _remember(_CLEAN_METHODS, method)
    path = event.path
    if path not in _CLEAN_PATHS:
        if type(path) is not str or not _PATH_CHARS.match(path):
            return None
        _remember(_CLEAN_PATHS, path)
    source = event.headers
    if type(source) is not dict:
        return None
    body = event.body
    text = None
    if type(body) is dict:
        # json.dumps is ASCII (ensure_ascii), so http.client's Latin-1 encoding is the identity
        text = dumps(body)
        body = text.encode("ascii")
        content_type = "application/json"
    else:
        if body is None:
            body = b""
        elif type(body) is str:
            try:
                body = body.encode("latin-1")
            except UnicodeEncodeError:
                return None
        elif type(body) is not bytes:
            return None
        content_type = event.content_type or "text/plain"
    try:
        key = (tuple(source.items()), content_type, function_name) if source else (content_type, function_name)
        pairs = _REQUEST_PAIRS.get(key, _REQUEST_PAIRS)
    except TypeError:  # an unhashable header name or value: not a plain event
        return None
    if pairs is _REQUEST_PAIRS:
        pairs = _request_pairs(source, content_type, function_name)
        if len(_REQUEST_PAIRS) >= _CACHE_LIMIT:
            _REQUEST_PAIRS.clear()
        _REQUEST_PAIRS[key] = pairs
    if pairs is None:
        return None
    return method, body, pairs, text


# (the event's header items, content type, function name) -> `_request_pairs`
_REQUEST_PAIRS = {}


def _request_pairs(source, content_type, function_name):
    """The header pairs of `call_request` (a tuple), or None when one is not plain; a function of
    the event's headers, the body's content type and the function name only."""
    headers = dict(source)
    headers["Content-Type"] = content_type
    headers[_contract.HEADER_NUCLIO_TARGET] = source.get(_contract.HEADER_NUCLIO_TARGET, function_name)
    headers.pop("Content-Length", None)
    pairs = []
    accept = True
    for pair in headers.items():
        name, value = pair
        if (
            type(name) is not str or type(value) is not str
            or not _TOKEN.match(name) or not _VISIBLE.match(value)
            or name.lower() in _BODY_FRAMING
        ):
            return None
        if accept and len(name) == 15 and name.lower() == _ACCEPT_ENCODING:
            accept = False
        pairs.append(pair)
    if accept:
        pairs.insert(0, _IDENTITY)
    return tuple(pairs)


# What the proxy's HTTP server answers to a request it cannot parse: hyper's empty 400.
BAD_REQUEST = (400, {"Content-Length": "0"}, b"")


def parses(method, pairs):
    """Whether the proxy's HTTP server (hyper, parsing with httparse) accepts a request with this
    method and these header pairs, which http.client lets through: a method and header names
    that are tokens, values without control characters but tab. Otherwise it answers
    `BAD_REQUEST` and nothing reaches the callee."""
    if not _TOKEN.match(method):
        return False
    for name, value in pairs:
        if not _TOKEN.match(name) or _CONTROL.search(value):
            return False
    return True


# What the proxy does not forward (`src/serve/http/mod.rs`, `forwardable`): hop-by-hop headers
# (RFC 9110 §7.6.1), those it recomputes, and its own routing headers, which it sets itself.
# `X-Fusionizer-Caller` is set by the calling side, replacing any the task wrote.
_NOT_FORWARDED = frozenset((
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
    _contract.HEADER_TASK_NAME.lower(), _ADDRESS, _PORT, _contract.HEADER_CALLER.lower(),
))
# fasthttp's `RequestHeader.VisitAll` leaves out these when their value is empty
_SKIPPED_WHEN_EMPTY = ("Content-Type", "User-Agent")
_FORWARDED_NAMES = {}


def forwarded_headers(pairs, own, body_length):
    """The callee's `event.headers` for a request that reaches it through the proxy.

    `pairs` are the request's (name, value) strings as sent (Latin-1 text of the bytes);
    `own` the (canonical name, value) pairs the calling side and the proxy set (the caller,
    `Task-Name`, the proxy's address and port). Each step is what happens on the way:

    - the proxy (`src/serve/http/mod.rs`) forwards every header but the ones above, and only values
      of visible ASCII and tabs (`HeaderValue::to_str`); HTTP parsing trims the blanks around a
      value;
    - Nuclio's HTTP trigger (`pkg/processor/trigger/http/event.go`, `GetHeaders`) hands the
      handler a map of every header of the request it got, names canonicalised by fasthttp
      (`content-type` -> `Content-Type`), the last value of a repeated name winning; that
      request carries `Content-Length` exactly when its body is not empty (the forwarding HTTP
      client sends none for an empty body). Its `Host` (the function's own address) is not
      known here and left out.
    """
    out = {}
    names = _FORWARDED_NAMES
    for name, value in pairs:
        kept = names.get(name)
        if kept is None:
            kept = "" if name.lower() in _NOT_FORWARDED else canonical_header(name)
            if len(names) >= _CACHE_LIMIT:
                names.clear()
            names[name] = kept
        if not kept:
            continue
        if not (value.isascii() and (value.isprintable() or _VISIBLE.match(value))):
            continue
        out[kept] = value.strip(" \t")
    for name, value in own:
        out[name] = value
    if body_length:
        out["Content-Length"] = str(body_length)
    for name in _SKIPPED_WHEN_EMPTY:
        if out.get(name) == "":
            del out[name]
    return out


_PATHS = {}


def nuclio_path(raw):
    """`event.path` for a request path `raw`, as Nuclio's HTTP trigger gives it: fasthttp's
    `URI.Path()` (`pkg/processor/trigger/http/event.go`, `GetPath`), percent-decoded (a `+`
    stays) and normalised: a leading `/`, no empty or `.` segments, `..` resolved."""
    path = _PATHS.get(raw)
    if path is None:
        path = urllib.parse.unquote(raw) if "%" in raw else raw
        if not path.startswith("/"):
            path = "/" + path
        if "//" in path or "/." in path:
            segments = path.split("/")[1:]
            trailing = segments[-1] in ("", ".", "..")
            kept = []
            for segment in segments:
                if segment == "..":
                    if kept:
                        kept.pop()
                elif segment and segment != ".":
                    kept.append(segment)
            path = "/" + "/".join(kept) + ("/" if trailing and kept else "")
        if len(_PATHS) >= _CACHE_LIMIT:
            _PATHS.clear()
        _PATHS[raw] = path
    return path


class InProcessConnection(http.client.HTTPConnection):
    """The connection `nuclio_sdk.Platform.call_function` gets for a sibling on the slow path.

    http.client builds the request exactly as it would for the network, with its own checks and
    errors; nothing is sent. `answer(method, header pairs, body)` runs the callee when the SDK
    asks for the response, and returns (status, headers, body).
    """

    def __init__(self, host, port=None, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, answer=None):
        super(InProcessConnection, self).__init__(host, port, timeout)
        self._answer = answer
        self._pairs = []
        self._chunks = []
        self._head_sent = False
        self._chunked = False

    def connect(self):
        """Nothing to connect to: the callee runs in this process."""

    def putheader(self, header, *values):
        super(InProcessConnection, self).putheader(header, *values)
        name, _, value = self._buffer[-1].partition(b": ")
        self._pairs.append((name.decode("latin-1"), value.decode("latin-1")))

    def endheaders(self, message_body=None, *, encode_chunked=False):
        self._chunked = encode_chunked and self._http_vsn == 11
        super(InProcessConnection, self).endheaders(message_body, encode_chunked=encode_chunked)

    def send(self, data):
        if not self._head_sent:
            self._head_sent = True  # the request line and headers, already in `_pairs`
            return
        try:
            chunk = bytes(memoryview(data))
        except TypeError:
            # what `socket.sendall` raises for it
            raise TypeError(
                "a bytes-like object is required, not '{0}'".format(type(data).__name__)
            ) from None
        if self._chunked:
            if chunk == b"0\r\n\r\n":
                return
            chunk = chunk[chunk.index(b"\r\n") + 2:-2]
        self._chunks.append(chunk)

    def getresponse(self):
        status, headers, body = self._answer(self._method, self._pairs, b"".join(self._chunks))
        return _Answer(status, headers, body)


class _Answer(object):
    """The part of `http.client.HTTPResponse` that `call_function` reads."""

    def __init__(self, status, headers, body):
        self.status = status
        self._headers = headers
        self._body = body

    def getheaders(self):
        return list(self._headers.items())

    def read(self):
        return self._body


class ProxyConnection(http.client.HTTPConnection):
    """The connection `call_function` gets for a task in another function: to the proxy.

    The request is the SDK's, checked by http.client as the SDK's own call would be, but sent to
    `/<callee>` (the proxy addresses a task by the first path segment) and carrying
    `X-Fusionizer-Caller: <caller>` instead of any the task wrote.
    """

    def __init__(self, host, port, timeout, callee, caller, traceparent=None):
        super(ProxyConnection, self).__init__(host, port, timeout)
        self._target = "/" + urllib.parse.quote(str(callee), safe="")
        self._caller = caller
        self._traceparent = traceparent
        self._has_traceparent = False

    def putrequest(self, method, url, skip_host=False, skip_accept_encoding=False):
        super(ProxyConnection, self).putrequest(method, url, skip_host, skip_accept_encoding)
        # `url` passed http.client's checks; the request line (the buffer's first entry) now
        # names the callee instead
        self._buffer[0] = self._encode_request(
            "{0} {1} {2}".format(method, self._target, self._http_vsn_str)
        )

    def putheader(self, header, *values):
        super(ProxyConnection, self).putheader(header, *values)
        name = self._buffer[-1].partition(b":")[0].lower()
        if name == _CALLER_BYTES:
            del self._buffer[-1]
        elif name == _TRACEPARENT_BYTES:
            self._has_traceparent = True

    def endheaders(self, message_body=None, *, encode_chunked=False):
        http.client.HTTPConnection.putheader(self, _contract.HEADER_CALLER, self._caller)
        if self._traceparent and not self._has_traceparent:
            # the event's trace goes on (W3C Trace Context), unless the task set its own
            http.client.HTTPConnection.putheader(
                self, _contract.HEADER_TRACEPARENT, self._traceparent
            )
        super(ProxyConnection, self).endheaders(message_body, encode_chunked=encode_chunked)


_CALLER_BYTES = _contract.HEADER_CALLER.lower().encode("ascii")
_TRACEPARENT_BYTES = _contract.HEADER_TRACEPARENT.lower().encode("ascii")
