"""Nuclio's HTTP trigger in front of one wrapper: an HTTP server on 127.0.0.1 whose requests
become events as `pkg/processor/trigger/http/event.go` builds them, run by
`processor.Processor` in Nuclio's own `_nuclio_wrapper.py`, and answered as the trigger answers
(`processor.http_answer`).

The conformance suite uses `serve` in-process; the fake nuctl (`tests/fake_nuctl/nuctl`, with
`FAKE_NUCTL_SERVE=1` and `FUSIONIZER_NUCLIO_UPSTREAM` set) runs this file as a program for each
deployed function:

    python trigger.py --upstream DIR --path FUNCTION_DIR --handler H --trigger-name N \
        --platform-kind local|kube --namespace NS

It prints the port it listens on, then serves until killed. The wrapper's log records go to
stderr, one JSON object a line.

One worker, as a function with `numWorkers: 1`: requests are handled one at a time.
"""

import argparse
import http.server
import json
import os
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import processor  # noqa: E402
except ImportError as exc:  # msgpack: say what is missing where, as the last line of the log
    if __name__ != "__main__":
        raise
    sys.stderr.write("{0}: {1} lacks msgpack, which Nuclio's wrapper needs (its image has it): "
                     "install msgpack==1.0.8 there ({2})\n".format(
                         os.path.basename(__file__), sys.executable, exc))
    sys.exit(1)


def canonical(name):
    """fasthttp's canonical header name (`content-type` -> `Content-Type`)."""
    return "-".join(part.capitalize() for part in name.split("-"))


class Handler(http.server.BaseHTTPRequestHandler):
    """Requests to events, answers back; `target` is the `Processor`."""

    target = None
    lock = None
    protocol_version = "HTTP/1.1"

    def _any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        # event.go GetHeaders: every header, canonical names, the last of a repeated name
        headers = {canonical(name): value for name, value in self.headers.items()}
        with self.lock:
            answer = self.target.invoke(
                body=body, content_type=headers.get("Content-Type", ""), headers=headers,
                method=self.command,
                # event.go GetPath: fasthttp's URI().Path(), percent-decoded
                path=urllib.parse.unquote(url.path),
                # event.go GetFields: the query arguments
                fields=dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True)),
                url=self.path)
        self.send_response(answer["status"])
        for name, value in answer["headers"].items():
            if name.lower() not in ("content-type", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Type", answer["content_type"])
        self.send_header("Content-Length", str(len(answer["body"])))
        self.end_headers()
        self.wfile.write(answer["body"])

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

    def log_message(self, *args):
        pass


def serve(target, threaded=False):
    """An HTTP server on 127.0.0.1 (a free port) in front of `target`; call `serve_forever`."""
    handler = type("Trigger", (Handler,), {"target": target, "lock": threading.Lock()})
    server_class = http.server.ThreadingHTTPServer if threaded else http.server.HTTPServer
    return server_class(("127.0.0.1", 0), handler)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--handler", required=True)
    parser.add_argument("--trigger-name", default="default-http")
    parser.add_argument("--platform-kind", default="local")
    parser.add_argument("--namespace", default="nuclio")
    args = parser.parse_args()

    def log(record):
        sys.stderr.write(json.dumps(record) + "\n")
        sys.stderr.flush()

    target = processor.Processor(
        args.handler, [os.path.abspath(args.path)], sys.executable,
        processor.find_wrapper(args.upstream), trigger_name=args.trigger_name,
        platform_kind=args.platform_kind, namespace=args.namespace, output=sys.stderr,
        on_log=log)
    target.start()
    server = serve(target, threaded=True)
    sys.stdout.write("%d\n" % server.server_address[1])
    sys.stdout.flush()
    sys.stdout.close()
    try:
        server.serve_forever()
    finally:
        target.stop()


if __name__ == "__main__":
    main()
