"""sip-message: a SIP handler in Python (RFC 3428 MESSAGE), on the same protobuf contract as
the Rust handlers (common/proto/sluice_sip.proto).

The sip-proxy POSTs an `Event` (application/x-protobuf); this answers with `Actions`:
200 OK to a MESSAGE with a text body, 415 to any other content type, 400 to an empty body.
Every answer names the handler and the byte count it read, so a client can see who answered.
"""

import sluice_sip_pb2 as sip

CONTENT_TYPE = "application/x-protobuf"


def header(request, name):
    for h in request.headers:
        if h.name.lower() == name.lower():
            return h.value
    return None


def respond(actions, status, reason="", headers=()):
    r = actions.actions.add().respond
    r.status = status
    r.reason = reason
    for name, value in headers:
        h = r.headers.add()
        h.name, h.value = name, value


def handle(event, context):
    ev = sip.Event()
    try:
        ev.ParseFromString(event["raw_body"])
    except Exception:  # a body that is not an Event: the caller is not the sip-proxy
        return {"error": "expected a protobuf sluice.sip.v1.Event"}, 400
    actions = sip.Actions()
    if ev.WhichOneof("kind") != "request":
        # Responses to requests this handler never sends: nothing to do.
        return actions.SerializeToString(), 200, {"content-type": CONTENT_TYPE}
    req = ev.request
    ctype = (header(req, "Content-Type") or "text/plain").split(";")[0].strip().lower()
    if req.method != "MESSAGE":
        respond(actions, 405, "", [("Allow", "MESSAGE")])
    elif not req.body:
        respond(actions, 400, "Empty MESSAGE")
    elif not ctype.startswith("text/"):
        respond(actions, 415, "", [("Accept", "text/plain")])
    else:
        respond(actions, 200, "", [("X-Sluice-Handler", "sip-message"),
                                   ("X-Received-Bytes", str(len(req.body)))])
    return actions.SerializeToString(), 200, {"content-type": CONTENT_TYPE}
