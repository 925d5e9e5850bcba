"""mcptt-group: the Group Handler of the MCPTT design. Prearranged groups of members, kept
in the function's own Redis state, with who is online right now.

HTTP JSON API (through the gateway, `/function/mcptt-group/...`):

  PUT    /groups/<id>           {"members": ["sip:alice@example.org", ...]}  create or replace
  GET    /groups/<id>           {"id", "members", "online"}
  GET    /groups                {"groups": [{"id", "members", "online"}, ...]}
  DELETE /groups/<id>           204
  GET    /groups/<id>/targets   {"id", "members", "targets": [{"member", "contacts": [...]}]}:
                                the online members with their registered contacts (for
                                mcptt-session)

Errors are JSON {"error", "field"?, "function"} with 400 (bad input, naming the field), 404
(unknown group), 405, 413.

Presence comes from the registrar: every (un)registration is an entry on its event stream
(`fn:sip-register:events`, readable through `events_from: [sip-register]`). Each call first
folds the entries it has not seen into per-member contact expiries, under WATCH on a cursor,
so replicas racing on the same entries apply each exactly once and in order. A binding that
lapses without an event drops out by its expiry time.
"""

import json
import os
import re
import time
import urllib.parse

try:
    import redis  # from extra_dependencies in the function image
except ImportError:  # the pure helpers below are unit-tested without it
    redis = None

PREFIX = os.environ.get("SLUICE_STATE_PREFIX", "fn:mcptt-group:")
REGISTRAR = os.environ.get("MCPTT_REGISTRAR", "sip-register")
EVENTS = "fn:%s:events" % REGISTRAR
MAX_MEMBERS = int(os.environ.get("MCPTT_MAX_MEMBERS", "256"))
MAX_BODY = 256 * 1024
BATCH = 1000

GROUP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$")

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


class BadInput(Exception):
    def __init__(self, field, message, status=400):
        super().__init__(message)
        self.field = field
        self.status = status


def canonical_uri(text):
    """The AOR form the registrar keys bindings by: scheme:user@host[:port], scheme and host
    lowercased, parameters and headers dropped, the user percent-decoded. None if `text` is
    not a sip:/sips: URI with a user and a host."""
    if not isinstance(text, str) or len(text) > 512:
        return None
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("sip", "sips"):
        return None
    rest = rest.split("?", 1)[0].split(";", 1)[0]
    user, at, hostport = rest.rpartition("@")
    if not at:
        return None
    user = user.split(":", 1)[0]
    if not user or any(c in user for c in " <>\"\r\n\t\x00"):
        return None
    # Percent-decoded, as the registrar keys AORs (`sip:bob%20b@h` is `sip:bob b@h`).
    user = urllib.parse.unquote(user)
    if any(ord(c) < 32 or c == "\x7f" for c in user):
        return None
    if hostport.startswith("["):
        host, close, after = hostport.partition("]")
        host += close
        port = after[1:] if after.startswith(":") else ("" if not after else None)
    else:
        host, _, port = hostport.partition(":")
    if port is None or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        return None
    host = host.lower()
    if not host or not re.match(r"^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9.-]*[a-z0-9])?)$", host):
        return None
    return "%s:%s@%s%s" % (scheme, user, host, ":" + port if port else "")


def check_members(body):
    if not isinstance(body, dict):
        raise BadInput("body", "expected a JSON object {\"members\": [...]}")
    unknown = sorted(set(body) - {"members"})
    if unknown:
        raise BadInput(unknown[0], "unknown field `%s`" % unknown[0])
    members = body.get("members")
    if not isinstance(members, list):
        raise BadInput("members", "expected a list of SIP URIs")
    if not members:
        raise BadInput("members", "a group needs at least one member")
    if len(members) > MAX_MEMBERS:
        raise BadInput("members", "at most %d members" % MAX_MEMBERS)
    seen = {}
    out = []
    for i, m in enumerate(members):
        uri = canonical_uri(m)
        if uri is None:
            raise BadInput("members[%d]" % i, "`%s` is not a SIP URI (sip:user@host)" % (m,))
        if uri in seen:
            raise BadInput("members[%d]" % i, "`%s` is already members[%d]" % (m, seen[uri]))
        seen[uri] = i
        out.append(uri)
    return out


def check_group_id(gid):
    if not GROUP_ID.match(gid or ""):
        raise BadInput("id", "`%s` is not a group id (letters, digits, `.`, `_`, `~`, `-`; "
                             "at most 64)" % gid)
    return gid


def sync_presence(r, now_ms):
    """Folds the registrar's events this function has not applied yet into presence."""
    cursor_key = PREFIX + "events:cursor"
    while True:
        for _ in range(32):
            with r.pipeline() as p:
                try:
                    p.watch(cursor_key)
                    cursor = p.get(cursor_key) or "0-0"
                    entries = p.xrange(EVENTS, min="(" + cursor, count=BATCH)
                    if not entries:
                        p.unwatch()
                        return
                    p.multi()
                    touched = {}
                    for entry_id, f in entries:
                        aor, contact = f.get("aor"), f.get("contact")
                        if not aor or not contact:
                            continue
                        key = PREFIX + "presence:" + aor
                        if f.get("type") == "unregistered":
                            p.hdel(key, contact)
                        else:
                            try:
                                until = int(f.get("at_ms", now_ms)) + 1000 * int(f.get("expires", 0))
                            except ValueError:
                                continue
                            p.hset(key, contact, until)
                            touched[key] = max(touched.get(key, 0), until)
                    for key, until in touched.items():
                        # Presence of members who never come back does not stay forever.
                        p.pexpireat(key, max(until, now_ms) + 3600 * 1000)
                    p.set(cursor_key, entries[-1][0])
                    p.execute()
                    break
                except redis.WatchError:
                    continue  # another replica moved the cursor: read again after it
        else:
            raise RuntimeError("presence: could not apply events (too much contention)")
        if len(entries) < BATCH:
            return


def contacts_of(r, members, now_ms):
    """member -> [contact URIs whose binding has not expired]."""
    with r.pipeline(transaction=False) as p:
        for m in members:
            p.hgetall(PREFIX + "presence:" + m)
        rows = p.execute()
    out = {}
    for m, row in zip(members, rows):
        live = sorted(c for c, until in row.items() if until.isdigit() and int(until) > now_ms)
        if live:
            out[m] = live
    return out


def load_group(r, gid):
    raw = r.get(PREFIX + "group:" + gid)
    if raw is None:
        raise BadInput("id", "no group `%s`" % gid, status=404)
    return json.loads(raw)["members"]


def view(gid, members, contacts):
    return {"id": gid, "members": members, "online": [m for m in members if m in contacts]}


def route(event):
    method = event["method"]
    parts = [urllib.parse.unquote(p) for p in event["path"].strip("/").split("/") if p]
    if not parts or parts[0] != "groups" or len(parts) > 3:
        raise BadInput("path", "no such path: use /groups or /groups/<id>", status=404)
    r = db()
    now_ms = int(time.time() * 1000)
    if len(parts) == 1:
        if method != "GET":
            return {"error": "use GET /groups", "function": "mcptt-group"}, 405, {"allow": "GET"}
        sync_presence(r, now_ms)
        ids = sorted(r.smembers(PREFIX + "groups"))
        groups = []
        for gid in ids:
            try:
                members = load_group(r, gid)
            except BadInput:
                continue  # deleted meanwhile
            groups.append(view(gid, members, contacts_of(r, members, now_ms)))
        return {"groups": groups}
    gid = check_group_id(parts[1])
    if len(parts) == 3:
        if parts[2] != "targets" or method != "GET":
            raise BadInput("path", "no such path: GET /groups/<id>/targets", status=404)
        sync_presence(r, now_ms)
        members = load_group(r, gid)
        contacts = contacts_of(r, members, now_ms)
        return {"id": gid, "members": members,
                "targets": [{"member": m, "contacts": contacts[m]} for m in members if m in contacts]}
    if method == "PUT":
        body = event["body"]
        if len(event["raw_body"]) > MAX_BODY:
            raise BadInput("body", "larger than %d bytes" % MAX_BODY, status=413)
        if not isinstance(body, (dict, list)):
            raise BadInput("body", "expected JSON")
        members = check_members(body)
        key = PREFIX + "group:" + gid
        with r.pipeline() as p:
            p.set(key, json.dumps({"members": members, "updated_ms": now_ms}))
            p.sadd(PREFIX + "groups", gid)
            p.execute()
        sync_presence(r, now_ms)
        return view(gid, members, contacts_of(r, members, now_ms))
    if method == "GET":
        sync_presence(r, now_ms)
        members = load_group(r, gid)
        return view(gid, members, contacts_of(r, members, now_ms))
    if method == "DELETE":
        with r.pipeline() as p:
            p.delete(PREFIX + "group:" + gid)
            p.srem(PREFIX + "groups", gid)
            deleted, _ = p.execute()
        if not deleted:
            raise BadInput("id", "no group `%s`" % gid, status=404)
        return None
    return ({"error": "use GET, PUT or DELETE", "function": "mcptt-group"}, 405,
            {"allow": "GET, PUT, DELETE"})


def handle(event, context):
    try:
        return route(event)
    except BadInput as e:
        return {"error": str(e), "field": e.field, "function": "mcptt-group"}, e.status
