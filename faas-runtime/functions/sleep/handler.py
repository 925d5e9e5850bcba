"""sleep: sleeps `ms` milliseconds, then answers JSON `{"slept_ms": n}`.

`ms` comes from the query (`/sleep?ms=250`) or a JSON body (`{"ms": 250}`); default 100,
capped at 60000. Useful for exercising timeouts, concurrency limits and autoscaling.
"""

import time

DEFAULT_MS = 100
MAX_MS = 60000


def _requested_ms(event):
    raw = event["query"].get("ms")
    body = event["body"]
    if raw is None and isinstance(body, dict):
        raw = body.get("ms")
    if raw is None:
        return DEFAULT_MS
    try:
        ms = int(float(raw))
    except (TypeError, ValueError):
        raise ValueError("ms must be a number, got %r" % (raw,))
    return max(0, min(ms, MAX_MS))


def handle(event, context):
    ms = _requested_ms(event)
    time.sleep(ms / 1000.0)
    return {"slept_ms": ms}
