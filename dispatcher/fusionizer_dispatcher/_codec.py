"""What travels between a caller and a callee: Nuclio's rules for events and responses.

An in-process call must look exactly like the HTTP call it replaces, so every conversion here is
the one Nuclio itself performs: the callee's event body is bytes, or `json.loads`ed only when the
content type is exactly `application/json` (`nuclio_sdk/event.py`); the callee's return value is
encoded by `nuclio_sdk.Response.from_entrypoint_output` with the SDK's JSON encoder, as Nuclio's
wrapper does; the HTTP trigger keeps only `str`/`int` header values; `call_function` hands back
lowercased headers and parses the body only for exactly `application/json`
(`nuclio_sdk/platform.py`). Only APIs present in both nuclio-sdk 0.5.13 (Nuclio 1.14 images) and
0.6.x are used.
"""

import base64
import datetime
import json
import os
import sys
import time
import traceback

import nuclio_sdk
import nuclio_sdk.json_encoder

_SDK_ENCODER = nuclio_sdk.json_encoder.Encoder()
_HANDLER_ERROR = 'Exception caught in handler - "{0}": {1}'
# handler results that are never awaitable (exact types): skips `inspect.isawaitable`'s ABC check
PLAIN_OUTPUTS = frozenset(
    (dict, list, str, bytes, tuple, int, float, bool, type(None), nuclio_sdk.Response)
)
_CANONICAL = {}
_CACHE_LIMIT = 4096


def _strict_encoder(sdk):
    """The SDK encoder's output through the C encoder, or None when that cannot be proved equal.

    The SDK's `Encoder` re-implements `iterencode` in Python only to spell non-finite floats as
    the strings `"NaN"`/`"Infinity"`; for every other value it yields what `json.JSONEncoder`
    with the same settings yields. The C encoder with `allow_nan=False` raises `ValueError` on
    exactly those floats (and on circular references, which the SDK encoder rejects too), so
    `encode` falls back to the SDK's own encoder then and is byte-identical always.
    """
    if sdk.indent is not None:
        return None
    strict = json.JSONEncoder(
        skipkeys=sdk.skipkeys, ensure_ascii=sdk.ensure_ascii, check_circular=sdk.check_circular,
        allow_nan=False, sort_keys=sdk.sort_keys,
        separators=(sdk.item_separator, sdk.key_separator), default=sdk.default,
    ).encode
    probe = {"s": "é\u2028\"", "i": [1, -2, True, False, None], "f": 0.1, 2: 1e300, 1.5: (), "o": {}}
    try:
        if strict(probe) != sdk.encode(probe):
            return None
    except Exception:
        return None
    return strict


def _encoder(sdk):
    strict = _strict_encoder(sdk)
    if strict is None:
        return sdk.encode
    fallback = sdk.encode

    def encode(output):
        try:
            return strict(output)
        except ValueError:
            return fallback(output)

    return encode


_ENCODE = _encoder(_SDK_ENCODER)


def canonical_header(name):
    """`content-type` -> `Content-Type`, as Nuclio's HTTP trigger (fasthttp) presents names."""
    canonical = _CANONICAL.get(name)
    if canonical is None:
        canonical = "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))
        if len(_CANONICAL) < _CACHE_LIMIT:
            _CANONICAL[name] = canonical
    return canonical


def set_header(headers, name, value):
    """Set `name` in a plain dict, replacing any spelling of it that differs only in case."""
    lowered = name.lower()
    for key in [key for key in headers if key.lower() == lowered]:
        del headers[key]
    headers[name] = value


def proxy_headers(headers):
    """(`Fusionizer-Server-Address`, `Fusionizer-Server-Port`) as `Event.get_header` finds each
    (the first name equal ignoring case), in one pass."""
    host = port = None
    found_host = found_port = False
    for key, value in headers.items():
        lowered = key.lower()
        if lowered == "fusionizer-server-address":
            if not found_host:
                host, found_host = value, True
                if found_port:
                    break
        elif lowered == "fusionizer-server-port":
            if not found_port:
                port, found_port = value, True
                if found_host:
                    break
    return host, port


def decode_body(body, content_type):
    """Nuclio's body rule: JSON only for exactly `application/json`, else the raw bytes."""
    if content_type == "application/json":
        try:
            return json.loads(body.decode("utf-8"))
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


def uuid4_string():
    """`str(uuid.uuid4())`, computed the same way without building a `UUID` object."""
    number = int.from_bytes(os.urandom(16), "big")
    number = (number & ~(0xC000 << 48)) | (0x8000 << 48)  # RFC 4122 variant
    number = (number & ~(0xF000 << 64)) | (4 << 76)  # version 4
    text = "%032x" % number
    return "{0}-{1}-{2}-{3}-{4}".format(text[:8], text[8:12], text[12:16], text[16:20], text[20:])


def new_event(body, content_type, headers, method, path, fields, trigger):
    """A fresh `nuclio_sdk.Event` as the callee's processor would build it from an HTTP request."""
    return nuclio_sdk.Event(
        body=decode_body(body, content_type),
        content_type=content_type,
        trigger=trigger,
        fields=fields,
        headers=headers,
        _id=uuid4_string(),
        method=method,
        path=path,
        size=len(body),
        timestamp=utc_timestamp(int(time.time())),
        url="",
    )


def encode_output(output):
    """Encode a handler's return value exactly as Nuclio's wrapper does.

    Returns (status_code, content_type, headers, body bytes); the wrapper's base64 body encoding
    (used for `bytes` results) is undone, as the processor does before answering.
    """
    kind = type(output)
    if kind is bytes:
        return 200, "text/plain", {}, output
    if kind is str:
        return 200, "text/plain", {}, output.encode("utf-8")
    response = nuclio_sdk.Response.from_entrypoint_output(_ENCODE, output)
    body = response["body"]
    if response.get("body_encoding") == "base64":
        body = base64.b64decode(body)
    else:
        body = body.encode("utf-8")
    return response["status_code"], response["content_type"], response["headers"], body


def error_output(exc):
    """The 500 response Nuclio's wrapper sends when a handler raises (call inside `except`)."""
    message = _HANDLER_ERROR.format(exc, traceback.format_exc())
    return 500, "text/plain", {}, message.encode("utf-8")


_WIRE_DROPPED = frozenset(("content-type", "content-length"))


def wire_headers(content_type, headers, body):
    """Response headers as an HTTP client receives them from Nuclio's HTTP trigger."""
    out = {}
    for name, value in headers.items():
        # the trigger keeps str and int values only (bool is not an int there); the
        # trigger's own Content-Type and Content-Length replace any spelling of them
        kind = type(value)
        if (kind is str or kind is int) and name.lower() not in _WIRE_DROPPED:
            out[name] = str(value)
    out["Content-Type"] = content_type
    out["Content-Length"] = str(len(body))
    return out


def sdk_response(status, headers, body):
    """What `nuclio_sdk.Platform.call_function` returns for an HTTP answer."""
    lowered = {name.lower(): value for name, value in headers.items()}
    content_type = lowered.get("content-type", "text/plain")
    if content_type == "application/json":
        body = json.loads(body)
    return nuclio_sdk.Response(
        headers=lowered, body=body, content_type=content_type, status_code=status
    )


def call_function_request(function_name, event):
    """Body, content type and headers `call_function` would send, without touching `event`."""
    body, content_type, target = call_function_body(function_name, event)
    headers = dict(event.headers or {})
    set_header(headers, "Content-Type", content_type)
    set_header(headers, "X-Nuclio-Target", target)
    for key in [key for key in headers if key.lower() == "content-length"]:
        del headers[key]
    return body, content_type, headers


def call_function_body(function_name, event):
    """Body, content type and `X-Nuclio-Target` `call_function` would send."""
    if isinstance(event.body, dict):
        body = json.dumps(event.body).encode("utf-8")
        content_type = "application/json"
    else:
        body = event.body
        content_type = event.content_type or "text/plain"
        if body is None:
            body = b""
        elif isinstance(body, str):
            # http.client sends str bodies as ISO-8859-1, like the SDK's HTTPConnection does
            body = body.encode("iso-8859-1")
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        elif not isinstance(body, bytes):
            raise TypeError(
                "call_function: event body must be bytes, str or dict, not {0}".format(
                    type(body).__name__
                )
            )
    return body, content_type, (event.headers or {}).get("X-Nuclio-Target", function_name)


# Names the in-process call replaces, by the comparison the step that replaces them uses:
# `call_function` itself compares the caller's names in lower case; the proxy's headers and
# Content-Length are replaced after the names were canonicalised, comparing those in lower case.
_CALL_SET = frozenset(("content-type", "x-nuclio-target", "content-length"))
_PROXY_SET = frozenset((
    "x-fusionizer-caller", "task-name", "fusionizer-server-address", "fusionizer-server-port",
    "content-length",
))
_REQUESTS_SET = _PROXY_SET | {"host"}
_CALL_NAMES = {}
_REQUESTS_NAMES = {}


def _kept_name(cache, name, own):
    """Canonical `name`, or "" when the in-process call replaces it (memoised)."""
    kept = cache.get(name)
    if kept is None:
        canonical = canonical_header(name)
        drop = (own is _CALL_SET and name.lower() in own) or canonical.lower() in (
            _PROXY_SET if own is _CALL_SET else own
        )
        kept = "" if drop else canonical
        if len(cache) < _CACHE_LIMIT:
            cache[name] = kept
    return kept


def call_function_headers(headers, content_type, target, body_length, proxy_headers):
    """The callee's headers for an in-process `call_function`, in the order the HTTP call has.

    Equal to `call_function_request`'s headers, canonicalised, then `proxy_headers` (name,
    value pairs with canonical names) and `Content-Length` set with `set_header`.
    """
    out = {}
    if headers:
        cache = _CALL_NAMES
        for name, value in headers.items():
            kept = cache.get(name)
            if kept is None:
                kept = _kept_name(cache, name, _CALL_SET)
            if kept:
                out[kept] = value
    out["Content-Type"] = content_type
    out["X-Nuclio-Target"] = target
    for name, value in proxy_headers:
        out[name] = value
    out["Content-Length"] = str(body_length)
    return out


def requests_headers(items, host, body_length, proxy_headers):
    """The callee's headers for an in-process `requests_session` call (see `call_function_headers`);
    `items` are the request's (name, value) pairs."""
    out = {}
    cache = _REQUESTS_NAMES
    for name, value in items:
        kept = cache.get(name)
        if kept is None:
            kept = _kept_name(cache, name, _REQUESTS_SET)
        if kept:
            out[kept] = value
    out["Host"] = host
    out["Content-Length"] = str(body_length)
    for name, value in proxy_headers:
        out[name] = value
    return out

