"""mcptt-session: the Session Handler of the MCPTT design, the controlling function of
prearranged group calls. A SIP handler (protobuf events from the sip-proxy, actions back:
common/proto/sluice_sip.proto).

A member INVITEs `sip:<group-id>@<any domain>` with SDP (or a multipart/mixed body with an
SDP part and an `application/vnd.3gpp.mcptt-info+xml` part). Then:

* the group's online members come from mcptt-group, a relay session from mcptt-media (the
  originator holds the floor: the INVITE is an implicit floor request);
* every other online member gets an INVITE with its own relay SDP, forked in parallel, each
  with a ring timeout (MCPTT_RING_TIMEOUT_MS);
* the originator gets 200 OK with its relay SDP when the first member answers
  (MCPTT_ANSWER=all: when every fork has ended, if one answered); members answering later
  join; 486/480/487/timeouts are left out; nobody answering gives the originator 480;
* BYE from the originator sends BYE to every member and frees the relay; BYE from a member
  ends that leg, and the last one leaving ends the call (BYE to the originator);
* CANCEL before the answer (the proxy answers 487) cancels the forks and frees the relay.

Every piece of call state is in the function's Redis store, updated with atomic operations
(HSETNX for "first answer", HINCRBY for the ringing/joined counts), so any replica handles
any event of any call, and concurrent answers are decided exactly once.
"""

import http.client
import json
import os
import random
import time
import urllib.parse

try:
    import redis  # from extra_dependencies in the function image
    import sluice_sip_pb2 as sip  # shipped in the Python image (common/proto/sluice_sip.proto)
except ImportError:  # the pure SIP/SDP helpers are unit-tested without them
    redis = sip = None

CONTENT_TYPE = "application/x-protobuf"
PREFIX = os.environ.get("SLUICE_STATE_PREFIX", "fn:mcptt-session:")
SELF = os.environ.get("SLUICE_FUNCTION", "mcptt-session")
GATEWAY = os.environ.get("MCPTT_GATEWAY", "http://gateway:8080")
GROUPS = os.environ.get("MCPTT_GROUP_FUNCTION", "mcptt-group")
MEDIA = os.environ.get("MCPTT_MEDIA_FUNCTION", "mcptt-media")
ANSWER = os.environ.get("MCPTT_ANSWER", "first")
RING_TIMEOUT_MS = int(os.environ.get("MCPTT_RING_TIMEOUT_MS", "30000"))
TTL_S = 12 * 3600
MCPTT_INFO = "application/vnd.3gpp.mcptt-info+xml"

_redis = None


def db():
    global _redis
    if _redis is None:
        url = os.environ.get("SLUICE_STATE_REDIS_URL")
        if not url:
            raise RuntimeError("no SLUICE_STATE_REDIS_URL: register the function with `state: redis`")
        _redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                      decode_responses=True)
    return _redis


# ---- SIP text helpers (pure) ----

def header(msg, name):
    name = name.lower()
    for h in msg.headers:
        if h.name.lower() == name:
            return h.value
    return None


def uri_of(value):
    """The URI inside a name-addr (`"Bob" <sip:bob@x>;tag=1`) or an addr-spec (`sip:bob@x;tag=1`)."""
    if value is None:
        return None
    value = value.strip()
    if "<" in value:
        start = value.index("<") + 1
        end = value.find(">", start)
        return value[start:end] if end > start else None
    return value.split(";", 1)[0].strip() or None


def tag_of(value):
    if value is None:
        return None
    rest = value[value.rfind(">") + 1:] if ">" in value else value
    for param in rest.split(";")[1:]:
        name, _, val = param.partition("=")
        if name.strip().lower() == "tag":
            return val.strip() or None
    return None


def aor(uri):
    """scheme:user@host[:port], scheme and host lowercased (the registrar's AOR form)."""
    if not uri:
        return None
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips"):
        return None
    rest = rest.split("?", 1)[0].split(";", 1)[0]
    user, at, host = rest.rpartition("@")
    if not at or not user or not host:
        return None
    return "%s:%s@%s" % (scheme.lower(), urllib.parse.unquote(user.split(":", 1)[0]), host.lower())


def group_id(request_uri):
    """The group an INVITE is for: the user part of its Request-URI."""
    a = aor(request_uri)
    if a is None:
        return None
    user = a.split(":", 1)[1].rsplit("@", 1)[0]
    return user if user and len(user) <= 64 else None


def sdp_of(content_type, body):
    """The SDP of an INVITE body: the body itself (application/sdp), or the SDP part of a
    multipart/mixed body (with an MCPTT info part or not). None if there is none."""
    if not body:
        return None
    ctype = (content_type or "").strip()
    main = ctype.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    if main == "application/sdp":
        return text
    if not main.startswith("multipart/"):
        return None
    boundary = None
    for param in ctype.split(";")[1:]:
        name, _, val = param.partition("=")
        if name.strip().lower() == "boundary":
            boundary = val.strip().strip('"')
    if not boundary:
        return None
    for part in text.split("--" + boundary)[1:]:
        if part.startswith("--"):
            break  # the closing delimiter
        head, sep, content = part.replace("\r\n", "\n").lstrip("\n").partition("\n\n")
        if not sep:
            continue
        for line in head.split("\n"):
            name, _, val = line.partition(":")
            if name.strip().lower() == "content-type" and val.strip().lower().startswith("application/sdp"):
                return content.rstrip("\n").replace("\n", "\r\n") + "\r\n"
    return None


def new_tag():
    return "%016x" % random.getrandbits(64)


# ---- actions ----

def respond(actions, status, transaction_id="", headers=(), body=b"", to_tag=""):
    r = actions.actions.add().respond
    r.transaction_id = transaction_id
    r.status = status
    if to_tag:
        r.to_tag = to_tag
    for name, value in headers:
        h = r.headers.add()
        h.name, h.value = name, value
    r.body = body


def send(actions, method, uri, headers, body=b"", context="", timeout_ms=0, cancel_context=""):
    s = actions.actions.add().send
    s.method = method
    s.uri = uri
    for name, value in headers:
        h = s.headers.add()
        h.name, h.value = name, value
    s.body = body
    if method not in ("ACK", "CANCEL"):
        s.response_handler = SELF
    s.context = context
    s.timeout_ms = timeout_ms
    s.cancel_context = cancel_context


# ---- calls to the other handlers, through the gateway ----

def call(function, method, path, body=None, timeout=5.0):
    url = urllib.parse.urlsplit(GATEWAY)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, "/function/%s%s" % (function, path), body=payload,
                     headers={"content-type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw) if raw else None
        except ValueError:
            return r.status, None
    finally:
        conn.close()


def quoted(s):
    return urllib.parse.quote(s, safe="")


# ---- the call state ----

def call_key(cid):
    return PREFIX + "call:" + cid


def leg_key(cid, member):
    return PREFIX + "call:%s:leg:%s" % (cid, member)


def on_invite(ev, actions):
    req = ev.request
    if ev.dialog.to_tag:
        # A re-INVITE in an established call: the media stays as it is.
        respond(actions, 488, headers=[("Warning", '399 sluice "re-INVITE not supported"')])
        return
    gid = group_id(req.uri)
    originator = aor(uri_of(header(req, "From")))
    if gid is None or originator is None:
        respond(actions, 404)
        return
    offer = sdp_of(header(req, "Content-Type"), req.body)
    if offer is None:
        respond(actions, 415, headers=[("Accept", "application/sdp, multipart/mixed")])
        return
    status, targets = call(GROUPS, "GET", "/groups/%s/targets" % quoted(gid))
    if status == 404:
        respond(actions, 404, headers=[("Warning", '399 sluice "no such group"')])
        return
    if status != 200 or not isinstance(targets, dict):
        respond(actions, 503, headers=[("Retry-After", "1")])
        return
    if originator not in targets.get("members", []):
        respond(actions, 403, headers=[("Warning", '399 sluice "not a member of the group"')])
        return
    others = [t for t in targets.get("targets", []) if t["member"] != originator and t["contacts"]]
    if not others:
        respond(actions, 480, headers=[("Warning", '399 sluice "no other member is online"')])
        return
    cid = ev.dialog.call_id
    legs = [{"id": originator, "sdp": offer}] + [{"id": t["member"]} for t in others]
    status, media = call(MEDIA, "POST", "/sessions",
                         {"id": cid, "sdp": offer, "legs": legs, "floor": originator})
    if status != 201 or not isinstance(media, dict):
        respond(actions, 503, headers=[("Retry-After", "1"),
                                       ("Warning", '399 sluice "no media relay available"')])
        return
    relay = {leg["id"]: leg["sdp"] for leg in media["legs"]}
    group_uri = "sip:%s@%s" % (gid, req.uri.split("@", 1)[1].split(";", 1)[0].split(">", 1)[0])
    our_tag = new_tag()
    r = db()
    with r.pipeline(transaction=True) as p:
        p.hset(call_key(cid), mapping={
            "group": gid, "group_uri": group_uri, "originator": originator,
            "orig_txn": ev.transaction_id, "orig_from": header(req, "From") or "",
            "orig_contact": uri_of(header(req, "Contact")) or uri_of(header(req, "From")),
            "tag": our_tag, "relay_sdp": relay[originator], "ringing": len(others),
            "joined": 0, "local": ev.local_address,
            "members": json.dumps([t["member"] for t in others]),
        })
        p.expire(call_key(cid), TTL_S)
        for t in others:
            leg_cid = "%s-%s" % (new_tag(), cid)
            p.hset(leg_key(cid, t["member"]), mapping={
                "call_id": leg_cid, "contact": t["contacts"][0], "state": "ringing"})
            p.expire(leg_key(cid, t["member"]), TTL_S)
            p.set(PREFIX + "legcall:" + leg_cid, json.dumps([cid, t["member"]]), ex=TTL_S)
            t["leg_cid"] = leg_cid
        p.execute()
    contact = "<sip:%s@%s>" % (gid, ev.local_address)
    for t in others:
        send(actions, "INVITE", t["contacts"][0], [
            ("From", "<%s>;tag=%s" % (group_uri, our_tag)),
            ("To", "<%s>" % t["member"]),
            ("Call-ID", t["leg_cid"]),
            ("CSeq", "1 INVITE"),
            ("Contact", contact),
            ("Content-Type", "application/sdp"),
        ], relay[t["member"]].encode(), context=cid, timeout_ms=RING_TIMEOUT_MS)


def answer_originator(r, cid, state, actions):
    """200 OK to the originator, once (HSETNX decides among concurrent answers)."""
    if not r.hsetnx(call_key(cid), "answered", 1):
        return
    respond(actions, 200, transaction_id=state["orig_txn"], to_tag=state["tag"], headers=[
        ("Contact", "<sip:%s@%s>" % (state["group"], state["local"])),
        ("Content-Type", "application/sdp"),
    ], body=state["relay_sdp"].encode())


def end_call(r, cid, state, actions, reason):
    """Frees the relay once (HSETNX), whoever ends the call."""
    if not r.hsetnx(call_key(cid), "ended", reason):
        return False
    call(MEDIA, "DELETE", "/sessions/%s" % quoted(cid))
    return True


def bye_member(actions, state, member, leg):
    send(actions, "BYE", leg.get("remote") or leg["contact"], [
        ("From", "<%s>;tag=%s" % (state["group_uri"], state["tag"])),
        ("To", "<%s>;tag=%s" % (member, leg.get("to_tag", ""))),
        ("Call-ID", leg["call_id"]),
        ("CSeq", "2 BYE"),
    ], context="bye:" + leg["call_id"])


def on_leg_response(ev, actions):
    resp = ev.response
    cid = ev.context
    r = db()
    state = r.hgetall(call_key(cid))
    member = aor(uri_of(header(resp, "To")))
    if not state or member is None:
        return  # a call that already ended long ago
    leg = r.hgetall(leg_key(cid, member))
    if not leg:
        return
    if resp.status < 200:
        if resp.status == 180 and not state.get("ringing_sent") and r.hsetnx(call_key(cid), "ringing_sent", 1):
            respond(actions, 180, transaction_id=state["orig_txn"], to_tag=state["tag"])
        return
    if resp.status < 300:
        remote = uri_of(header(resp, "Contact")) or leg["contact"]
        to_tag = tag_of(header(resp, "To")) or ""
        send(actions, "ACK", remote, [
            ("From", "<%s>;tag=%s" % (state["group_uri"], state["tag"])),
            ("To", header(resp, "To")),
            ("Call-ID", leg["call_id"]),
            ("CSeq", "1 ACK"),
        ])
        leg.update({"remote": remote, "to_tag": to_tag})
        if state.get("ended"):
            # Answered after the call ended (cancelled, hung up): end this leg too.
            bye_member(actions, state, member, leg)
            return
        r.hset(leg_key(cid, member), mapping={"state": "joined", "remote": remote, "to_tag": to_tag})
        ringing = r.hincrby(call_key(cid), "ringing", -1)
        r.hincrby(call_key(cid), "joined", 1)
        sdp = resp.body.decode("utf-8", errors="replace")
        call(MEDIA, "PUT", "/sessions/%s/legs/%s" % (quoted(cid), quoted(member)), {"sdp": sdp})
        if ANSWER != "all" or ringing <= 0:
            answer_originator(r, cid, state, actions)
        return
    # 3xx–6xx, or the proxy's own 408: this member is left out.
    r.hset(leg_key(cid, member), "state", "failed:%d" % resp.status)
    ringing = r.hincrby(call_key(cid), "ringing", -1)
    if not state.get("ended"):
        call(MEDIA, "DELETE", "/sessions/%s/legs/%s" % (quoted(cid), quoted(member)))
    if ringing > 0 or state.get("ended"):
        return
    joined = int(r.hget(call_key(cid), "joined") or 0)
    if joined > 0:
        answer_originator(r, cid, state, actions)  # MCPTT_ANSWER=all: the last fork ended
    elif end_call(r, cid, state, actions, "no answer"):
        respond(actions, 480, transaction_id=state["orig_txn"], to_tag=state["tag"],
                headers=[("Warning", '399 sluice "no member answered"')])


def on_cancel(ev, actions):
    cid = ev.dialog.call_id
    r = db()
    state = r.hgetall(call_key(cid))
    if not state:
        return
    send(actions, "CANCEL", "", [], cancel_context=cid)
    end_call(r, cid, state, actions, "cancelled")


def on_bye(ev, actions):
    r = db()
    cid = ev.dialog.call_id
    state = r.hgetall(call_key(cid))
    if state:
        # The originator hangs up: every member gets BYE, ringing forks are cancelled.
        respond(actions, 200)
        if not end_call(r, cid, state, actions, "originator left"):
            return
        send(actions, "CANCEL", "", [], cancel_context=cid)
        for member in json.loads(state.get("members", "[]")):
            leg = r.hgetall(leg_key(cid, member))
            if leg.get("state") == "joined":
                bye_member(actions, state, member, leg)
        return
    found = r.get(PREFIX + "legcall:" + cid)
    if found is None:
        respond(actions, 481)
        return
    cid, member = json.loads(found)
    state = r.hgetall(call_key(cid))
    respond(actions, 200)
    if not state or state.get("ended"):
        return
    r.hset(leg_key(cid, member), "state", "left")
    joined = r.hincrby(call_key(cid), "joined", -1)
    call(MEDIA, "DELETE", "/sessions/%s/legs/%s" % (quoted(cid), quoted(member)))
    ringing = int(r.hget(call_key(cid), "ringing") or 0)
    if joined <= 0 and ringing <= 0 and end_call(r, cid, state, actions, "last member left"):
        # The last member left: the originator's dialog ends too.
        send(actions, "BYE", state["orig_contact"], [
            ("From", "<%s>;tag=%s" % (state["group_uri"], state["tag"])),
            ("To", state["orig_from"]),
            ("Call-ID", cid),
            ("CSeq", "1 BYE"),
        ], context="bye:" + cid)


def handle(event, context):
    ev = sip.Event()
    try:
        ev.ParseFromString(event["raw_body"])
    except Exception:  # a body that is not an Event: the caller is not the sip-proxy
        return {"error": "expected a protobuf sluice.sip.v1.Event"}, 400
    actions = sip.Actions()
    kind = ev.WhichOneof("kind")
    if kind == "request":
        method = ev.request.method
        if method == "INVITE":
            on_invite(ev, actions)
        elif method == "BYE":
            on_bye(ev, actions)
        elif method == "CANCEL":
            on_cancel(ev, actions)
        elif method == "ACK":
            pass  # the originator confirmed our 200
        else:
            respond(actions, 405, headers=[("Allow", "INVITE, ACK, BYE, CANCEL")])
    elif kind == "response" and ev.context and not ev.context.startswith("bye:"):
        on_leg_response(ev, actions)
    return actions.SerializeToString(), 200, {"content-type": CONTENT_TYPE}
