# Sluice python zygote and worker. Embedded in faas-runtime and run as `python3 -u -B -c`.
#
# The zygote imports the user's handler file ONCE, reports the result on the control socket,
# then forks workers on request. Each worker connects to the worker socket and serves framed
# requests one at a time until the socket closes. The protocol only ever travels over those
# Unix sockets, so the function's print()/logging (stdout/stderr, inherited from the
# container) cannot corrupt it.
#
# Control socket, newline-delimited text:
#   runtime -> zygote: "fork"
#   zygote -> runtime: "loaded <import_ms>" | "import_error <JSON string>" | "forked <pid>"
#                      | "exited <pid> <status text>"
# Worker socket frames (both directions): u32 header length, u32 body length (big endian),
# the binary header, the raw body bytes. A "string" is u32 length + UTF-8 bytes.
#   request header:  f64 deadline (epoch s), u16 query pairs, u16 header pairs, then strings:
#                    method, path, request id, query k/v..., header k/v... (names lowercase)
#   response header: u16 status, u8 flags (1 = error), u16 header pairs, then strings:
#                    [error message if flagged], header k/v...
#
# Start-up cost matters (cold starts): only C-level modules are imported here (no json, no
# socket/signal wrappers, no importlib.util); json is imported lazily when a call needs it.

import _signal
import _socket
import os
import select
import struct
import sys
import time

_env = os.environ
CONTROL = _env.pop("_SLUICE_CONTROL", "")
WORKER_SOCKET = _env.pop("_SLUICE_WORKER_SOCKET", "")
HANDLER = _env.pop("_SLUICE_HANDLER", "")
FUNCTION = _env.pop("_SLUICE_FUNCTION", "")
INITIAL_WORKERS = int(_env.pop("_SLUICE_WORKERS", "1") or "1")
PREFIX = struct.Struct(">II")
U32 = struct.Struct(">I")
REQ_HEAD = struct.Struct(">dHH")
RESP_HEAD = struct.Struct(">HBH")
SMALL = 64 * 1024
_json = None


def json():
    """The json module, imported on first use (it costs milliseconds at start-up)."""
    global _json
    if _json is None:
        import json as module

        _json = module
    return _json


def log(msg):
    sys.stderr.write("sluice-python[%d] %s: %s\n" % (os.getpid(), FUNCTION, msg))


def send_line(ctrl, line):
    ctrl.sendall((line + "\n").encode("utf-8"))


def describe_error(exc):
    text = str(exc)
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__


def load_handler():
    path = os.path.abspath(HANDLER)
    folder = os.path.dirname(path)
    if sys.path and sys.path[0] in ("", "."):
        del sys.path[0]
    # The function's own modules and packages come after the standard library (a `json.py`
    # in deps/ must not replace the one the runtime uses) and before the installed packages
    # (its pinned versions win over the image's).
    at = next(
        (i for i, p in enumerate(sys.path) if os.path.basename(p) in ("site-packages", "dist-packages")),
        len(sys.path),
    )
    sys.path[at:at] = [folder, os.path.join(folder, "deps")]
    # The platform's own modules (the SIP contract's sluice_sip_pb2), after everything else.
    sdk = os.environ.get("SLUICE_PYTHON_SDK")
    if sdk and os.path.isdir(sdk):
        sys.path.append(sdk)
    name = os.path.splitext(os.path.basename(path))[0] or "handler"
    try:  # what importlib.util re-exports, without importing util's dependencies
        from importlib._bootstrap import module_from_spec
        from importlib._bootstrap_external import spec_from_file_location
    except ImportError:
        from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("%s is not a Python source file" % path)
    module = module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    handle = getattr(module, "handle", None)
    if not callable(handle):
        raise ImportError("%s defines no callable handle(event, context)" % path)
    return handle


class Context:
    """Per-call context handed to handle(event, context)."""

    __slots__ = ("function_name", "request_id", "deadline")

    def __init__(self, function_name, request_id, deadline):
        self.function_name = function_name
        self.request_id = request_id
        self.deadline = deadline

    def remaining_ms(self):
        """Milliseconds left before the runtime answers 504 and kills this worker."""
        return max(0, int((self.deadline - time.time()) * 1000))

    def __repr__(self):
        return "Context(function_name=%r, request_id=%r, remaining_ms=%d)" % (
            self.function_name,
            self.request_id,
            self.remaining_ms(),
        )


def decode_body(raw, content_type):
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            return json().loads(text)
        except ValueError:
            pass
    return text


def parse_request(head):
    """Decodes a request header into (deadline, method, path, request_id, query, headers)."""
    deadline, nq, nh = REQ_HEAD.unpack_from(head, 0)
    off = REQ_HEAD.size
    strings = []
    for _ in range(3 + 2 * nq + 2 * nh):
        (n,) = U32.unpack_from(head, off)
        off += 4
        strings.append(head[off : off + n].decode("utf-8", "replace"))
        off += n
    q = strings[3 : 3 + 2 * nq]
    h = strings[3 + 2 * nq :]
    return deadline, strings[0], strings[1], strings[2], q, h


def make_event(method, path, q, h, raw):
    headers = {}
    for i in range(0, len(h), 2):
        k, v = h[i], h[i + 1]
        if k in headers:
            headers[k] = headers[k] + ("; " if k == "cookie" else ", ") + v
        else:
            headers[k] = v
    query = {}
    query_all = {}
    for i in range(0, len(q), 2):
        k, v = q[i], q[i + 1]
        query[k] = v
        query_all.setdefault(k, []).append(v)
    return {
        "body": decode_body(raw, headers.get("content-type", "")),
        "raw_body": raw,
        "method": method,
        "path": path,
        "query": query,
        "query_all": query_all,
        "headers": headers,
    }


def encode_result(ret):
    """Turns what handle() returned into (status, headers, body bytes)."""
    if ret is None:
        return 204, [], b""
    status = 200
    extra = None
    if isinstance(ret, tuple):
        if len(ret) == 2:
            ret, status = ret
        elif len(ret) == 3:
            ret, status, extra = ret
        else:
            raise TypeError("a returned tuple must be (body, status) or (body, status, headers)")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
            raise TypeError("status must be an int between 100 and 999, got %r" % (status,))
    if ret is None:
        body, ctype = b"", None
    elif isinstance(ret, str):
        body, ctype = ret.encode("utf-8"), "text/plain; charset=utf-8"
    elif isinstance(ret, (bytes, bytearray, memoryview)):
        body, ctype = bytes(ret), "application/octet-stream"
    else:
        body, ctype = json().dumps(ret).encode("utf-8"), "application/json"
    headers = []
    if extra:
        if not isinstance(extra, dict):
            raise TypeError("response headers must be a dict, got %s" % type(extra).__name__)
        headers = [(str(k), str(v)) for k, v in extra.items()]
    if ctype and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("content-type", ctype))
    return status, headers, body


def encode_string(parts, text):
    data = text.encode("utf-8", "replace")
    parts.append(U32.pack(len(data)))
    parts.append(data)


def encode_head(status, headers, error=None):
    parts = [RESP_HEAD.pack(status, 1 if error is not None else 0, len(headers))]
    if error is not None:
        encode_string(parts, error)
    for k, v in headers:
        encode_string(parts, k)
        encode_string(parts, v)
    return b"".join(parts)


def call(handle, head, raw):
    """Runs one call; returns (response header bytes, body bytes). Never raises."""
    request_id = "?"
    try:
        deadline, method, path, request_id, q, h = parse_request(head)
        context = Context(FUNCTION, request_id, deadline)
        ret = handle(make_event(method, path, q, h, raw), context)
        if hasattr(ret, "__await__"):
            import asyncio

            ret = asyncio.run(ret)
        status, headers, body = encode_result(ret)
        if len(headers) > 0xFFFF:
            raise ValueError("too many response headers")
        return encode_head(status, headers), body
    except BaseException as exc:  # the worker keeps serving whatever the handler did
        import traceback

        log("request %s raised:\n%s" % (request_id, traceback.format_exc().rstrip()))
        return encode_head(500, [], describe_error(exc)), b""


def worker(handle):
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.connect(WORKER_SOCKET)
    rfile = open(sock.fileno(), "rb", buffering=SMALL, closefd=False)
    while True:
        prefix = rfile.read(8)
        if len(prefix) != 8:
            return
        hlen, blen = PREFIX.unpack(prefix)
        head = rfile.read(hlen)
        raw = rfile.read(blen) if blen else b""
        if len(head) != hlen or len(raw) != blen:
            return
        head, body = call(handle, head, raw)
        prefix = PREFIX.pack(len(head), len(body))
        if len(body) < SMALL:
            sock.sendall(prefix + head + body)
        else:
            sock.sendall(prefix + head)
            sock.sendall(body)


def exit_status(status):
    if os.WIFSIGNALED(status):
        return "killed by signal %d" % os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return "exit status %d" % os.WEXITSTATUS(status)
    return "status %d" % status


def zygote(ctrl, handle):
    children = set()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(_signal.SIGCHLD, lambda signum, frame: None)

    def spawn():
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _signal.set_wakeup_fd(-1)
                _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
                os.close(wake_r)
                os.close(wake_w)
                ctrl.close()
                worker(handle)
            except BaseException as exc:
                log("worker stopped: %s" % describe_error(exc))
                code = 1
            finally:
                os._exit(code)
        children.add(pid)
        send_line(ctrl, "forked %d" % pid)

    def reap():
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children.discard(pid)
            send_line(ctrl, "exited %d %s" % (pid, exit_status(status)))

    for _ in range(INITIAL_WORKERS):
        spawn()
    pending = b""
    while True:
        readable, _, _ = select.select([ctrl, wake_r], [], [])
        if wake_r in readable:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
            reap()
        if ctrl in readable:
            data = ctrl.recv(4096)
            if not data:  # the runtime is stopping (or gone): take the workers down with us
                for pid in children:
                    try:
                        os.kill(pid, _signal.SIGKILL)
                    except OSError:
                        pass
                os._exit(0)
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip() == b"fork":
                    spawn()


def main():
    ctrl = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    ctrl.connect(CONTROL)
    started = time.monotonic()
    try:
        handle = load_handler()
    except BaseException as exc:
        import traceback

        log("cannot import %s:\n%s" % (HANDLER, traceback.format_exc().rstrip()))
        send_line(ctrl, "import_error " + json().dumps(describe_error(exc)))
        os._exit(3)
    send_line(ctrl, "loaded %.3f" % ((time.monotonic() - started) * 1000.0))
    zygote(ctrl, handle)


main()
