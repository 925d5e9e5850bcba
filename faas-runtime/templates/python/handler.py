"""A Sluice Python function.

The runtime imports this file ONCE per container and then calls `handle` for every
request (several worker processes may run it in parallel, each handling one call at a
time). Put expensive set-up (clients, models, caches) at module level, not in `handle`.

pip dependencies listed in the registry (`extra_dependencies`) are installed into a
`deps/` folder next to this file, which is on `sys.path`: import them normally.
"""


def handle(event, context):
    """Handle one request.

    event: dict
        body      -- parsed JSON (dict/list/...) when the body is JSON, else str when it
                     is UTF-8 text, else bytes; None when the request has no body.
        raw_body  -- the body exactly as received (bytes).
        method    -- "GET", "POST", ...
        path      -- the request path, e.g. "/hello".
        query     -- dict of query parameters (a repeated name keeps its last value).
        query_all -- dict of query parameters, each a list of all values.
        headers   -- dict of request headers, names lowercase.

    context:
        function_name  -- this function's name.
        request_id     -- the caller's X-Request-Id, or a generated id.
        deadline       -- when the runtime gives up on this call (epoch seconds, float).
        remaining_ms() -- milliseconds left until then.

    Return value -> response:
        str                   -> 200 text/plain; charset=utf-8
        bytes                 -> 200 application/octet-stream
        dict/list/int/float/bool -> 200 application/json
        None                  -> 204 No Content
        (body, status)        -> the body as above with that status
        (body, status, headers_dict) -> ... plus these headers (may set Content-Type)
    Raising an exception -> 500 {"error": "ValueError: ...", "function": "<name>"}
    (the traceback goes to the container log).

    print() and logging go to the container log; they never reach the response.
    """
    name = event["query"].get("name", "world")
    return {"message": "Hello, %s" % name, "request_id": context.request_id}
