"""state-probe (test fixture): what a function declared `state: redis` can do with the Redis
credentials the platform gives it. Speaks RESP over a plain socket (no client library), and
answers with every reply, errors included, so the test can assert them.
"""

import os
import socket
from urllib.parse import unquote, urlparse


def _read(f):
    line = f.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return "ERR " + rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read(f) for _ in range(n)]
    raise ValueError(f"unexpected reply {line!r}")


class Session:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.file = self.sock.makefile("rb")

    def __call__(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return _read(self.file)


def handle(event, context):
    url = urlparse(os.environ["SLUICE_STATE_REDIS_URL"])
    prefix = os.environ["SLUICE_STATE_PREFIX"]
    control = event["query"]["control"]  # a control-plane hash key, e.g. <instance>:functions
    host, port = url.hostname, url.port or 6379

    anonymous = Session(host, port)
    me = Session(host, port)
    return {
        "prefix": prefix,
        "control_password_file_visible": os.path.exists("/run/sluice-secret/redis-password"),
        "anonymous_get": anonymous("HGETALL", control),
        "default_user_guess": anonymous("AUTH", "default", ""),
        "auth": me("AUTH", unquote(url.username), unquote(url.password)),
        "own_set": me("SET", prefix + "probe", "1"),
        "own_get": me("GET", prefix + "probe"),
        "control_read": me("HGETALL", control),
        "control_write": me("HSET", control, "evil", "1"),
        "sluice_write": me("SET", "sluice:evil", "1"),
        "sluice_delete": me("DEL", "sluice:functions"),
        "keys": me("KEYS", "*"),
        "scan": me("SCAN", "0"),
        "flushall": me("FLUSHALL"),
        "other_function": me("GET", "fn:sip-register:users"),
    }
