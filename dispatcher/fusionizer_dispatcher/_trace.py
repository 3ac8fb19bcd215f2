"""What the dispatcher reports to the proxy about an event, beside the answer (docs/traces.md).

- The in-process calls it made: one record per call, `caller callee s|a status duration_us
  bytes`, joined by `,`, at most `MAX_RECORDS` (then a last `+N` counts the rest). The local
  worker sends the text in its `R` frame (`trace`); on Nuclio it is the response header
  `X-Fusionizer-Trace`, which the proxy strips before the client sees it.
- When the proxy asks (`X-Fusionizer-Sample-Rss`, or the `E` frame's `sample_rss`), the
  process's peak resident set over the event, on Linux: the peak is reset by writing `5` to
  `/proc/<pid>/clear_refs` before the event and read with `getrusage` after it (about 2 µs for
  both). Elsewhere it is unknown.
"""

import os
import resource

from . import _contract

MAX_RECORDS = 64

_PREFER = _contract.HEADER_PREFER.lower()
_RESPOND_ASYNC = _contract.PREFER_RESPOND_ASYNC


def record(trace, caller, callee, mode, status, micros, size):
    """Append one call record to `trace` (a list), or count it past `MAX_RECORDS`.

    The record is kept as its fields; its text is written only when the trailer is (most events
    make no call through the proxy that reads it, and a call should cost as little as it can)."""
    if len(trace) < MAX_RECORDS:
        trace.append((caller, callee, mode, status, micros, size))
        return True
    return False


def _text(record):
    return "%s %s %s %s %s %s" % record


def trailer(trace, more):
    """The trailer text for `trace` plus `more` calls not itemised ('' when there were none)."""
    texts = [_text(record) for record in trace]
    if more:
        texts.append("+{0}".format(more))
    return ",".join(texts)


def prefers_async(pairs):
    """Whether header pairs carry `Prefer: respond-async` (RFC 7240; tokens in any case)."""
    for name, value in pairs:
        if len(name) == 6 and name.lower() == _PREFER:
            for preference in str(value).split(","):
                token = preference.split(";")[0].split("=")[0].strip()
                if token.lower() == _RESPOND_ASYNC:
                    return True
    return False


_clear_refs = None


def reset_peak_rss():
    """Reset the process's peak RSS; False when the platform cannot.

    The file stays open: a write of `5` to an open `/proc/<pid>/clear_refs` resets the peak each
    time (Linux `Documentation/admin-guide/mm/soft-dirty.rst`, `fs/proc/task_mmu.c`), so a
    sample costs one `write`, not an `open`/`write`/`close`.
    """
    global _clear_refs
    try:
        if _clear_refs is None:
            _clear_refs = os.open("/proc/{0}/clear_refs".format(os.getpid()), os.O_WRONLY)
        os.write(_clear_refs, b"5")
        return True
    except OSError:
        return False


def peak_rss():
    """The process's peak RSS in bytes since the last reset, or None when unknown.

    `getrusage(RUSAGE_SELF).ru_maxrss` (KiB on Linux) is the larger of the process's high-water
    mark, which the reset above clears, and that of threads that already exited
    (`kernel/sys.c`, `getrusage`); one system call instead of reading and parsing
    `/proc/self/status` (about 1.4 µs against 8 µs here).
    """
    try:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (OSError, ValueError):
        return None
