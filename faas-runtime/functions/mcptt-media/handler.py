"""mcptt-media: the Media Handler of the MCPTT design. It manages the MDF relay instances:
picks one with free capacity for each call, allocates and frees relay sessions there through
the MDF control API (mdf/openapi.yaml), and writes each leg's SDP so that its media goes
through the relay.

HTTP JSON API (through the gateway, `/function/mcptt-media/...`), used by mcptt-session:

  POST   /sessions                 {"id", "legs": [{"id", "sdp"?}], "floor"?, "sdp"}
         → 201 {"id", "instance", "address", "legs": [{"id", "rtp_port", "rtcp_port", "sdp"}]}
         `sdp` is the originator's offer: every leg's SDP keeps its media lines and codecs, with
         the relay's address and that leg's ports. A leg given with its own `sdp` (the
         originator) has its media address set at once.
  PUT    /sessions/<id>/legs/<leg> {"sdp"}: the leg answered; its media address from its SDP
  DELETE /sessions/<id>/legs/<leg> the leg left
  DELETE /sessions/<id>            the call ended: the relay frees its ports
  GET    /sessions/<id>            the relay's view (legs, floor, counters)

Which instance holds a session is kept in the function's Redis state, so any replica can act
on any session. The instances come from the orchestrator (`SLUICE_MDF_URLS`, one control URL
per slot it may fill, and `SLUICE_MDF_TOKEN`); a slot with no instance refuses the
connection and is skipped.
"""

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request

try:
    import redis  # from extra_dependencies in the function image
except ImportError:  # the pure SDP helpers are unit-tested without it
    redis = None

PREFIX = os.environ.get("SLUICE_STATE_PREFIX", "fn:mcptt-media:")
MDF_URLS = [u.strip().rstrip("/") for u in os.environ.get("SLUICE_MDF_URLS", "").split(",") if u.strip()]
MDF_TOKEN = os.environ.get("SLUICE_MDF_TOKEN", "")
SESSION_TTL_S = 24 * 3600
STATUS_TTL_S = 1.0
MAX_BODY = 256 * 1024

_redis = None
_status = {"at": 0.0, "instances": []}


class Failure(Exception):
    def __init__(self, status, message, field=None):
        super().__init__(message)
        self.status = status
        self.field = field


def db():
    global _redis
    if _redis is None:
        url = os.environ.get("SLUICE_STATE_REDIS_URL")
        if not url:
            raise RuntimeError("no SLUICE_STATE_REDIS_URL: register the function with `state: redis`")
        _redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                      decode_responses=True)
    return _redis


# ---- SDP ----

def media_address(sdp):
    """(ip, rtp port, rtcp port) of the first audio stream in an SDP body; the RTCP port is
    `a=rtcp:`'s, else the MCPTT floor-control `m=application` port, else RTP + 1."""
    if not isinstance(sdp, str):
        return None
    session_ip, ip, port, rtcp, app_port, in_audio = None, None, None, None, None, False
    for line in sdp.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if line.startswith("c="):
            parts = line[2:].split()
            if len(parts) >= 3 and parts[0] == "IN" and parts[1] in ("IP4", "IP6"):
                addr = parts[2].split("/")[0]
                if port is None and not in_audio:
                    session_ip = addr
                elif in_audio:
                    ip = addr
        elif line.startswith("m="):
            parts = line[2:].split()
            in_audio = False
            if len(parts) >= 3 and parts[1].isdigit():
                if parts[0] == "audio" and port is None:
                    port, in_audio = int(parts[1]), True
                elif parts[0] == "application" and app_port is None:
                    app_port = int(parts[1])
        elif line.startswith("a=rtcp:") and in_audio:
            value = (line[7:].split() or [""])[0]
            if value.isdigit():
                rtcp = int(value)
    ip = ip or session_ip
    if ip is None or port is None or not 0 < port < 65536:
        return None
    rtcp = rtcp or app_port or port + 1
    if not 0 < rtcp < 65536:
        return None
    return ip, port, rtcp


def relay_sdp(template, address, rtp_port, rtcp_port, session_id):
    """`template`'s media lines with the relay's address and this leg's ports: connection
    lines point at the relay, the audio stream at `rtp_port` (RTCP at `rtcp_port`), the
    floor-control `m=application` stream at `rtcp_port` (the relay reads floor messages
    there). ICE and RTCP attributes of the original endpoint are dropped."""
    family = "IP6" if ":" in address else "IP4"
    out = []
    kind = None
    for line in template.replace("\r\n", "\n").split("\n"):
        line = line.rstrip()
        if not line:
            continue
        if line.startswith("o="):
            out.append("o=sluice %d %d IN %s %s" % (session_id, int(time.time()), family, address))
        elif line.startswith("c="):
            out.append("c=IN %s %s" % (family, address))
        elif line.startswith("m="):
            parts = line[2:].split()
            kind = parts[0] if parts else None
            if kind == "audio" and len(parts) >= 3:
                out.append("m=audio %d %s" % (rtp_port, " ".join(parts[2:])))
                out.append("a=rtcp:%d" % rtcp_port)
            elif kind == "application" and len(parts) >= 3:
                out.append("m=application %d %s" % (rtcp_port, " ".join(parts[2:])))
            else:
                # A stream the relay does not carry (video, ...): refused, as RFC 3264 says.
                out.append("m=%s 0 %s" % (kind, " ".join(parts[2:]) if len(parts) >= 3 else ""))
        elif line.startswith(("a=rtcp:", "a=candidate", "a=ice-", "a=end-of-candidates",
                              "a=rtcp-mux")):
            continue
        else:
            out.append(line)
    if not any(line.startswith("c=") for line in out):
        at = next((i for i, l in enumerate(out) if l.startswith(("t=", "m="))), len(out))
        out.insert(at, "c=IN %s %s" % (family, address))
    return "\r\n".join(out) + "\r\n"


# ---- MDF instances ----

def mdf_call(base, method, path, body=None, timeout=3.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("content-type", "application/json")
    if MDF_TOKEN:
        req.add_header("authorization", "Bearer " + MDF_TOKEN)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"error": raw.decode(errors="replace")}


def instances():
    """Reachable, not draining instances, least loaded first (cached for a second)."""
    now = time.monotonic()
    if now - _status["at"] < STATUS_TTL_S and _status["instances"]:
        return _status["instances"]
    found = []
    for url in MDF_URLS:
        try:
            status, s = mdf_call(url, "GET", "/v1/status", timeout=0.5)
        except (OSError, ValueError):
            continue  # an empty slot, or an instance going away
        if status == 200 and isinstance(s, dict) and not s.get("draining"):
            found.append((s.get("load", 1.0), url))
    found.sort()
    _status["at"], _status["instances"] = now, [u for _, u in found]
    return _status["instances"]


def choose_and_create(body):
    """Creates the session on the least loaded instance. When every instance of the cached
    list is full or draining, the list is read again at once (the pool may just have
    launched one) and the instances not tried yet are tried."""
    last = "no MDF instance is running"
    tried = set()
    for fresh in (False, True):
        if fresh:
            _status["at"] = 0.0
        for url in instances():
            if url in tried:
                continue
            tried.add(url)
            try:
                status, s = mdf_call(url, "POST", "/v1/sessions", body)
            except (OSError, ValueError) as e:
                last = "%s: %s" % (url, e)
                continue
            if status == 201:
                return url, s
            if status == 503:
                last = "%s: %s" % (url, (s or {}).get("error"))
                continue
            raise Failure(502 if status >= 500 else status, "MDF: %s" % (s or {}).get("error"),
                          (s or {}).get("field"))
    raise Failure(503, "no MDF instance can take the session (%s)" % last)


def instance_of(r, sid):
    url = r.get(PREFIX + "session:" + sid)
    if url is None:
        raise Failure(404, "no session `%s`" % sid, "id")
    return url


# ---- API ----

def body_of(event):
    if len(event["raw_body"]) > MAX_BODY:
        raise Failure(413, "larger than %d bytes" % MAX_BODY, "body")
    body = event["body"]
    if not isinstance(body, dict):
        raise Failure(400, "expected a JSON object", "body")
    return body


def create(event):
    body = body_of(event)
    sid = body.get("id")
    if not isinstance(sid, str) or not re.match(r"^[!-~]{1,200}$", sid):
        raise Failure(400, "expected a session id (printable, at most 200)", "id")
    legs = body.get("legs")
    if not isinstance(legs, list) or not legs:
        raise Failure(400, "expected a list of legs", "legs")
    template = body.get("sdp")
    if media_address(template) is None:
        raise Failure(400, "expected the originator's SDP with an audio stream", "sdp")
    mdf_legs = []
    for i, leg in enumerate(legs):
        if not isinstance(leg, dict) or not isinstance(leg.get("id"), str):
            raise Failure(400, "expected {\"id\", \"sdp\"?}", "legs[%d]" % i)
        entry = {"id": leg["id"]}
        if leg.get("sdp") is not None:
            addr = media_address(leg["sdp"])
            if addr is None:
                raise Failure(400, "no audio stream in the SDP", "legs[%d].sdp" % i)
            entry["rtp"] = "%s:%d" % (addr[0], addr[1])
            entry["rtcp"] = "%s:%d" % (addr[0], addr[2])
        mdf_legs.append(entry)
    req = {"id": sid, "legs": mdf_legs}
    if body.get("floor") is not None:
        req["floor"] = body["floor"]
    url, s = choose_and_create(req)
    db().set(PREFIX + "session:" + sid, url, ex=SESSION_TTL_S)
    sdp_id = int(time.time() * 1000) & 0x7FFFFFFF
    out = []
    for leg in s["legs"]:
        out.append({"id": leg["id"], "rtp_port": leg["rtp_port"], "rtcp_port": leg["rtcp_port"],
                    "sdp": relay_sdp(template, s["address"], leg["rtp_port"], leg["rtcp_port"], sdp_id)})
    return {"id": sid, "instance": url, "address": s["address"], "legs": out}, 201


def route(event):
    method = event["method"]
    parts = [urllib.parse.unquote(p) for p in event["path"].strip("/").split("/") if p]
    if not parts or parts[0] != "sessions" or len(parts) not in (1, 2, 4):
        raise Failure(404, "no such path", "path")
    if len(parts) == 1:
        if method != "POST":
            raise Failure(405, "use POST /sessions")
        return create(event)
    sid = parts[1]
    r = db()
    url = instance_of(r, sid)
    quoted = urllib.parse.quote(sid, safe="")
    if len(parts) == 4:
        if parts[2] != "legs":
            raise Failure(404, "no such path", "path")
        leg = urllib.parse.quote(parts[3], safe="")
        if method == "PUT":
            addr = media_address(body_of(event).get("sdp"))
            if addr is None:
                raise Failure(400, "no audio stream in the SDP", "sdp")
            status, s = mdf_call(url, "PUT", "/v1/sessions/%s/legs/%s" % (quoted, leg),
                                 {"rtp": "%s:%d" % (addr[0], addr[1]),
                                  "rtcp": "%s:%d" % (addr[0], addr[2])})
        elif method == "DELETE":
            status, s = mdf_call(url, "DELETE", "/v1/sessions/%s/legs/%s" % (quoted, leg))
        else:
            raise Failure(405, "use PUT or DELETE")
        return s, status
    if method == "GET":
        status, s = mdf_call(url, "GET", "/v1/sessions/" + quoted)
        return s, status
    if method == "DELETE":
        status, s = mdf_call(url, "DELETE", "/v1/sessions/" + quoted)
        if status in (200, 404):
            r.delete(PREFIX + "session:" + sid)
        return s, status
    raise Failure(405, "use GET or DELETE")


def handle(event, context):
    try:
        return route(event)
    except Failure as e:
        out = {"error": str(e), "function": "mcptt-media"}
        if e.field:
            out["field"] = e.field
        return out, e.status
    except OSError as e:
        return {"error": "MDF unreachable: %s" % e, "function": "mcptt-media"}, 502
