"""slowstart: a function whose import takes 3 s (as one that loads a model or a large
library does), then answers like `sleep`: sleeps `ms` milliseconds (query `ms`, default
100, at most 60000) and answers JSON `{"slept_ms": n, "import_s": s}`.

The import time comes from `SLOWSTART_IMPORT_SECONDS` (default 3). The runtime imports the
handler once, before the replica reports ready, so every cold start of this function takes
that much longer: the tests and the benchmark use it for slow cold starts.
"""

import os
import time

IMPORT_SECONDS = float(os.environ.get("SLOWSTART_IMPORT_SECONDS", "3"))
time.sleep(max(0.0, IMPORT_SECONDS))

MAX_MS = 60000


def handle(event, context):
    raw = (event["query"] or {}).get("ms", "100")
    try:
        ms = max(0, min(int(float(raw)), MAX_MS))
    except (TypeError, ValueError):
        return {"error": "ms must be a number, got %r" % (raw,)}, 400
    time.sleep(ms / 1000.0)
    return {"slept_ms": ms, "import_s": IMPORT_SECONDS}
