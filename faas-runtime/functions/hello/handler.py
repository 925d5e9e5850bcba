"""hello: answers `Hello, <name>` (text/plain).

The name comes from the query (`/hello?name=Ada`) or a JSON body (`{"name": "Ada"}`);
it defaults to `world`.
"""


def handle(event, context):
    name = event["query"].get("name")
    body = event["body"]
    if not name and isinstance(body, dict):
        name = body.get("name")
    return "Hello, %s" % (name or "world")
