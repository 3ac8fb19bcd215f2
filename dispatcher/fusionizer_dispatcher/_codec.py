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
import sys
import time
import traceback
import uuid

import nuclio_sdk
import nuclio_sdk.json_encoder

_ENCODE = nuclio_sdk.json_encoder.Encoder().encode
_HANDLER_ERROR = 'Exception caught in handler - "{0}": {1}'
_CANONICAL = {}


def canonical_header(name):
    """`content-type` -> `Content-Type`, as Nuclio's HTTP trigger (fasthttp) presents names."""
    canonical = _CANONICAL.get(name)
    if canonical is None:
        canonical = "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))
        if len(_CANONICAL) < 4096:
            _CANONICAL[name] = canonical
    return canonical


def set_header(headers, name, value):
    """Set `name` in a plain dict, replacing any spelling of it that differs only in case."""
    lowered = name.lower()
    for key in [key for key in headers if key.lower() == lowered]:
        del headers[key]
    headers[name] = value


def decode_body(body, content_type):
    """Nuclio's body rule: JSON only for exactly `application/json`, else the raw bytes."""
    if content_type == "application/json":
        try:
            return json.loads(body.decode("utf-8"))
        except Exception as exc:
            sys.stderr.write("Failed deserializing json body, error message: {0}\n".format(exc))
    return body


def utc_timestamp(seconds):
    """`datetime.utcfromtimestamp(seconds)` without its deprecation warning on Python 3.12+."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)


def new_event(body, content_type, headers, method, path, fields, trigger):
    """A fresh `nuclio_sdk.Event` as the callee's processor would build it from an HTTP request."""
    return nuclio_sdk.Event(
        body=decode_body(body, content_type),
        content_type=content_type,
        trigger=trigger,
        fields=fields,
        headers=headers,
        _id=str(uuid.uuid4()),
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


def wire_headers(content_type, headers, body):
    """Response headers as an HTTP client receives them from Nuclio's HTTP trigger."""
    out = {}
    for name, value in headers.items():
        # the trigger keeps str and int values only (bool is not an int there)
        if type(value) is str or type(value) is int:
            out[name] = str(value)
    set_header(out, "Content-Type", content_type)
    set_header(out, "Content-Length", str(len(body)))
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
    headers = dict(event.headers or {})
    set_header(headers, "Content-Type", content_type)
    target = (event.headers or {}).get("X-Nuclio-Target", function_name)
    set_header(headers, "X-Nuclio-Target", target)
    for key in [key for key in headers if key.lower() == "content-length"]:
        del headers[key]
    return body, content_type, headers
