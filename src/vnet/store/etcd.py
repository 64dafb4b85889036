"""The distributed store: etcd (3.4 or later) through its JSON gateway (etcd3gw).

Layout: one key per object, `PREFIX KIND/ID` (prefix `/vnet/` unless told),
holding the object's JSON without its revision.  Revisions are etcd's own:

- an object's revision is its key's `mod_revision` (written into the value
  read back as `revision`, as SqliteStore does);
- the global revision is etcd's header revision: the revision of the last
  write to the whole etcd, which is also what `snapshot` and `commit` return.
  One commit is one etcd txn, so all its objects share one revision; but
  writes outside the prefix (other users of the etcd, leases later) move it
  too, and a commit that changes nothing (deleting what is absent) does not.
  Callers may compare revisions for equality and order; they never count
  them (the Store interface promises no more).

`commit` is one txn: a compare per op with `expect` (0: `create_revision ==
0`, absent; N: `mod_revision == N`), the puts and deletes when all hold, and
when one fails a read of every compared key in the same txn, so the
StaleRevision names the object and its actual revision.  etcd refuses a txn
of more than 128 operations (`--max-txn-ops`) or a request over 1.5 MiB
(`--max-request-bytes`); a commit over either is refused here with a
StoreError naming the limit, before anything is sent, and changes nothing.
Fitting a large apply into several valid commits is the Northbound's job.
Two ops on one object in one commit are refused too (etcd's rule; SQLite's
commit would let the last one win).  A txn whose connection could not be
opened is tried on the next endpoint; one whose answer was lost is not
retried (it may have applied) and raises StoreError: the caller settles it by
committing again with the same compares (an `expect` that now fails says it
had applied).  A commit caught by the leader's death waits out etcd's
request timeout (seconds) or this store's `timeout`, whichever ends first;
the members left elect a new leader and take commits again.

`events_since(rev)` reads etcd's history with a watch from `rev + 1` over
the whole key space, up to the header revision read first: every etcd
revision is some key's event, so the last one always arrives and ends the
read; events outside the prefix are dropped.  (A watch over the prefix alone
cannot tell "no more events" from "not yet"; a watch progress request could,
but the 3.4 gateway cannot carry a second request on the stream.)  A
revision etcd compacted away raises Compacted: reload a snapshot.  vnet does
not compact; etcd's `--auto-compaction-*` or `compact()` does.

`subscribe(fn)` runs a thread per subscription on a watch of the prefix from
the revision at subscribe time; each etcd revision's events (one commit) go
to `fn` together, in order.  When the connection breaks (an etcd restarted,
a member killed) the thread reconnects, to the next endpoint, from the
revision after the last it delivered, so nothing is skipped or repeated; if
that revision was compacted meanwhile, `fn([])` says events were lost and
the watch carries on from the current revision.  Unlike SqliteStore, a
subscriber sees its own process' commits through the watch too, shortly
after `commit` returns.

`snapshot` reads the prefix at one revision, in pages pinned to the
revision of the first (a page compacted meanwhile restarts the read).

Endpoints are tried in order, sticking to the last that answered; reads are
linearizable (etcd's default), so any member answers with the latest
committed data.  Every request requires a leader (etcd's `hasleader`
metadata, as its Go client's `WithRequireLeader`): a member cut from its
quorum answers "no leader" at once and ends its watches, and the store
moves to the next endpoint -- safe for a commit too, as nothing was proposed.  Plain HTTP only, no authentication, for now.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import requests

from .base import Compacted, Event, Op, StaleRevision, StoreError

with warnings.catch_warnings():
    # etcd3gw imports eventlet where it is installed (os-ken brings it): its warnings are noise
    warnings.simplefilter("ignore")
    from etcd3gw.client import Etcd3Client

__all__ = ["MAX_REQUEST_BYTES", "MAX_TXN_OPS", "EtcdStore", "parse_endpoints"]

log = logging.getLogger(__name__)

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
MAX_REQUEST_BYTES = 1536 * 1024  # etcd's default --max-request-bytes (1.5 MiB)
PAGE = 1000  # keys per page of a snapshot
TIMEOUT = 10.0  # seconds for one request (etcd's own request timeout is shorter)
RETRY = 0.2  # seconds between a watch's reconnects


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _range_end(prefix: bytes) -> bytes:
    """The first key after every key starting with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


def parse_endpoints(text: str) -> list[tuple[str, int]]:
    """'HOST:PORT[,HOST:PORT...]' ([v6]:PORT too) -> [(host, port)]; ValueError says what is wrong."""
    out = []
    for item in text.split(","):
        host, sep, port = item.strip().rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item.strip()!r}: expected HOST:PORT")
        out.append((host, int(port)))
    return out


class _NotSent(Exception):
    """The request never reached etcd (connection refused or not made in time)."""


class EtcdStore:
    def __init__(
        self,
        endpoints: str | Sequence[tuple[str, int]],
        prefix: str = "/vnet/",
        *,
        timeout: float = TIMEOUT,
        max_txn_ops: int = MAX_TXN_OPS,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        eps = parse_endpoints(endpoints) if isinstance(endpoints, str) else list(endpoints)
        if not eps:
            raise ValueError("no etcd endpoint")
        if not prefix.endswith("/"):
            prefix += "/"
        self.endpoints = eps
        self.prefix = prefix
        self._prefix = prefix.encode()
        self._end = _range_end(self._prefix)
        self.timeout = timeout
        self.max_txn_ops = max_txn_ops
        self.max_request_bytes = max_request_bytes
        self._current = 0  # index of the endpoint that answered last
        self._local = threading.local()  # a client (HTTP session) per thread
        self._lock = threading.Lock()
        self._watches: list[_Watch] = []
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> EtcdStore:
        """etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (prefix /vnet/ unless given)."""
        scheme, sep, rest = url.partition("://")
        if scheme != "etcd" or not sep:
            raise ValueError(f"{url!r}: expected etcd://HOST:PORT[,HOST:PORT...]")
        hosts, slash, path = rest.partition("/")
        try:
            eps = parse_endpoints(hosts)
        except ValueError as e:
            raise ValueError(f"{url!r}: {e}") from None
        prefix = "/" + path.strip("/") + "/" if slash and path.strip("/") else "/vnet/"
        return cls(eps, prefix)

    def __repr__(self) -> str:
        eps = ",".join(f"{h}:{p}" for h, p in self.endpoints)
        return f"EtcdStore(etcd://{eps}, prefix={self.prefix!r})"

    # -- requests -----------------------------------------------------------------------
    def _client(self, i: int) -> Etcd3Client:
        clients: dict[int, Etcd3Client] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        c = clients.get(i)
        if c is None:
            host, port = self.endpoints[i]
            c = clients[i] = _client(host, port, self.timeout)
        return c

    def _post_one(self, i: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
        c = self._client(i)
        try:
            resp = c.session.post(c.get_url(path), json=body, timeout=self.timeout)
        except requests.exceptions.ConnectTimeout as e:
            raise _NotSent(str(e)) from e
        except requests.exceptions.ConnectionError as e:
            reason = getattr(e.args[0], "reason", None) if e.args else None
            if type(reason).__name__ == "NewConnectionError":
                raise _NotSent(str(e)) from e
            raise
        try:
            out = resp.json()
        except ValueError:
            out = {}
        if resp.status_code != 200:
            msg = out.get("error") or out.get("message") or resp.text.strip() or resp.reason
            raise StoreError(f"etcd {self._url(i)}: {msg}")
        if not isinstance(out, dict):
            raise StoreError(f"etcd {self._url(i)}: unexpected answer {out!r}")
        return out

    def _url(self, i: int) -> str:
        host, port = self.endpoints[i]
        return f"{'[' + host + ']' if ':' in host else host}:{port}"

    def _post(self, path: str, body: dict[str, Any], *, idempotent: bool = True) -> dict[str, Any]:
        """POST to the endpoint that answered last, then the others in turn.

        A request that may have reached etcd is tried again elsewhere only when
        `idempotent` (reads); a txn's lost answer is an error."""
        n = len(self.endpoints)
        start = self._current
        errors = []
        for k in range(n):
            i = (start + k) % n
            try:
                out = self._post_one(i, path, body)
            except _NotSent as e:
                errors.append(f"{self._url(i)}: {e}")
                continue
            except requests.exceptions.RequestException as e:
                if not idempotent:
                    raise StoreError(
                        f"etcd {self._url(i)}: {e} (the commit may or may not have applied)"
                    ) from e
                errors.append(f"{self._url(i)}: {e}")
                continue
            except StoreError as e:
                # a member without a leader (its quorum lost) answers so: ask another; a
                # request that timed out there may still apply, so only a read is asked again
                if "no leader" in str(e) or (idempotent and "timed out" in str(e)):
                    errors.append(str(e))
                    continue
                raise
            self._current = i
            return out
        raise StoreError("no etcd endpoint answered: " + "; ".join(errors))

    def _key(self, kind: str, oid: str) -> bytes:
        return self._prefix + f"{kind}/{oid}".encode()

    def _split(self, key: bytes) -> tuple[str, str] | None:
        if not key.startswith(self._prefix):
            return None
        kind, sep, oid = key[len(self._prefix) :].decode().partition("/")
        return (kind, oid) if sep else None

    @staticmethod
    def _value(kv: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        rev = int(kv.get("mod_revision", 0))
        value = json.loads(_unb64(kv.get("value", "")) or b"{}")
        return rev, {**value, "revision": rev}

    # -- reading ------------------------------------------------------------------------
    def revision(self) -> int:
        out = self._post("/kv/range", {"key": _b64(self._prefix), "count_only": True})
        return int(out["header"]["revision"])

    def snapshot(self) -> tuple[int, list[tuple[str, str, int, dict[str, Any]]]]:
        while True:
            try:
                return self._snapshot()
            except StoreError as e:
                if "compacted" not in str(e):
                    raise

    def _snapshot(self) -> tuple[int, list[tuple[str, str, int, dict[str, Any]]]]:
        rows = []
        key, rev = self._prefix, 0
        while True:
            body: dict[str, Any] = {
                "key": _b64(key),
                "range_end": _b64(self._end),
                "limit": PAGE,
            }
            if rev:
                body["revision"] = rev
            out = self._post("/kv/range", body)
            if not rev:
                rev = int(out["header"]["revision"])
            kvs = out.get("kvs", [])
            for kv in kvs:
                name = self._split(_unb64(kv["key"]))
                if name is not None:
                    r, v = self._value(kv)
                    rows.append((name[0], name[1], r, v))
            if not out.get("more") or not kvs:
                break
            key = _unb64(kvs[-1]["key"]) + b"\0"
        rows.sort(key=lambda r: (r[0], r[1]))
        return rev, rows

    def get(self, kind: str, oid: str) -> tuple[int, dict[str, Any]] | None:
        out = self._post("/kv/range", {"key": _b64(self._key(kind, oid))})
        kvs = out.get("kvs", [])
        return self._value(kvs[0]) if kvs else None

    # -- writing ------------------------------------------------------------------------
    def commit(self, ops: Sequence[Op]) -> int:
        if not ops:
            return self.revision()
        if len(ops) > self.max_txn_ops:
            raise StoreError(
                f"a commit of {len(ops)} operations: etcd takes at most {self.max_txn_ops} "
                f"operations per transaction (--max-txn-ops); nothing was changed"
            )
        compare: list[dict[str, Any]] = []
        success: list[dict[str, Any]] = []
        failure: list[dict[str, Any]] = []
        compared: list[Op] = []
        seen: set[bytes] = set()
        size = 0
        for op in ops:
            key = self._key(op.kind, op.id)
            if key in seen:
                raise StoreError(
                    f"{op.kind} {op.id}: changed twice in one commit (etcd refuses that); "
                    f"nothing was changed"
                )
            seen.add(key)
            k = _b64(key)
            size += len(key) + 16
            if op.expect is not None:
                if op.expect == 0:
                    compare.append({"key": k, "target": "CREATE", "create_revision": 0})
                else:
                    compare.append({"key": k, "target": "MOD", "mod_revision": op.expect})
                failure.append({"request_range": {"key": k}})
                compared.append(op)
                size += 2 * len(key) + 32
            if op.value is None:
                success.append({"request_delete_range": {"key": k}})
            else:
                value = {f: v for f, v in op.value.items() if f != "revision"}
                data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
                size += len(data)
                success.append({"request_put": {"key": k, "value": _b64(data)}})
        if size > self.max_request_bytes:
            raise StoreError(
                f"a commit of about {size} bytes: etcd takes at most {self.max_request_bytes} "
                f"bytes per request (--max-request-bytes); nothing was changed"
            )
        body = {"compare": compare, "success": success, "failure": failure}
        try:
            out = self._post("/kv/txn", body, idempotent=False)
        except StoreError as e:
            if "too many operations" in str(e) or "too large" in str(e):
                raise StoreError(f"{e}: the etcd's limits are lower; nothing was changed") from e
            raise
        rev = int(out["header"]["revision"])
        if out.get("succeeded"):
            return rev
        for op, r in zip(compared, out.get("responses", []), strict=False):
            kvs = r.get("response_range", {}).get("kvs", [])
            actual = int(kvs[0]["mod_revision"]) if kvs else 0
            if actual != op.expect:
                assert op.expect is not None
                raise StaleRevision(op.kind, op.id, op.expect, actual)
        raise StoreError("etcd refused the commit's compares, yet every object is as expected")

    def compact(self, revision: int) -> None:
        """Drop etcd's history before `revision` (events_since of older ones: Compacted)."""
        self._post("/kv/compaction", {"revision": revision, "physical": True})

    # -- history ------------------------------------------------------------------------
    def events_since(self, revision: int) -> list[Event]:
        head = self.revision()
        if head <= revision:
            return []
        n = len(self.endpoints)
        first = self._current
        errors = []
        for k in range(n):  # a read: any member will do
            i = (first + k) % n
            try:
                return self._history(i, revision, head)
            except Compacted:
                raise
            except (requests.exceptions.RequestException, StoreError, ValueError) as e:
                errors.append(f"{self._url(i)}: {e}")
        raise StoreError("no etcd endpoint gave the history: " + "; ".join(errors))

    def _history(self, i: int, revision: int, head: int) -> list[Event]:
        """The prefix's events in (revision, head] from endpoint `i`."""
        events: list[Event] = []
        deadline = time.monotonic() + 3 * self.timeout
        c = self._client(i)
        body: dict[str, Any] = {
            "create_request": {
                "key": _b64(b"\0"),
                "range_end": _b64(b"\0"),
                "start_revision": revision + 1,
            }
        }
        resp = c.session.post(
            c.get_url("/watch"), json=body, stream=True, timeout=(self.timeout, self.timeout)
        )
        try:
            for result in _results(resp, self._url(i)):
                for rev, batch in self._events(result, keep_all=True):
                    events.extend(e for e in batch if e.kind)
                    if rev >= head:
                        return events
                if time.monotonic() > deadline:
                    break
        finally:
            resp.close()
        raise StoreError(f"etcd {self._url(i)}: the history to revision {head} did not arrive")

    def _events(
        self, result: dict[str, Any], keep_all: bool = False
    ) -> Iterator[tuple[int, list[Event]]]:
        """A watch response's events, one list per revision (Compacted if it says so)."""
        if int(result.get("compact_revision", 0)):
            raise Compacted(f"etcd compacted its history to revision {result['compact_revision']}")
        batch: list[Event] = []
        rev = 0
        for ev in result.get("events", []):
            kv = ev["kv"]
            r = int(kv.get("mod_revision", 0))
            if batch and r != rev:
                yield rev, batch
                batch = []
            rev = r
            name = self._split(_unb64(kv["key"]))
            if name is None:
                if keep_all:  # a placeholder: the revision arrived, but not ours
                    batch.append(Event(r, "", "", None))
                continue
            if ev.get("type") == "DELETE":
                batch.append(Event(r, name[0], name[1], None))
            else:
                batch.append(Event(r, name[0], name[1], self._value(kv)[1]))
        if batch:
            yield rev, batch

    def subscribe(self, fn: Callable[[list[Event]], None]) -> Callable[[], None]:
        w = _Watch(self, self.revision() + 1, fn)
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            self._watches.append(w)
        w.start()

        def cancel() -> None:
            with self._lock:
                if w in self._watches:
                    self._watches.remove(w)
            w.stop()

        return cancel

    def close(self) -> None:
        with self._lock:
            self._closed = True
            watches, self._watches = self._watches, []
        for w in watches:
            w.stop()
        for w in watches:
            w.join(timeout=2)


def _client(host: str, port: int, timeout: float) -> Etcd3Client:
    c = Etcd3Client(host, port, timeout=timeout, api_path="/v3/")
    # gRPC metadata through the gateway: a member without a leader answers "no leader" at
    # once (instead of timing out) and cancels its watches, so the next member is asked
    c.session.headers["Grpc-Metadata-hasleader"] = "true"
    return c


def _results(resp: requests.Response, where: str) -> Iterator[dict[str, Any]]:
    """The watch stream's responses (one JSON object a line); StoreError on an error."""
    if resp.status_code != 200:
        raise StoreError(f"etcd {where}: watch refused: {resp.text.strip() or resp.reason}")
    buf = b""
    for chunk in resp.iter_content(chunk_size=None):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if not line.strip():
                continue
            msg = json.loads(line)
            if "error" in msg:
                raise StoreError(f"etcd {where}: watch: {msg['error']}")
            result = msg.get("result", {})
            if result.get("canceled") and not int(result.get("compact_revision", 0)):
                raise StoreError(f"etcd {where}: watch canceled: {result.get('cancel_reason')}")
            yield result


class _Watch(threading.Thread):
    """One subscription: a watch of the prefix, reconnected from the next revision."""

    def __init__(self, store: EtcdStore, start: int, fn: Callable[[list[Event]], None]) -> None:
        super().__init__(name="etcd-watch", daemon=True)
        self.store, self.next, self.fn = store, start, fn
        self._stop_event = threading.Event()
        self._resp: requests.Response | None = None
        self._mu = threading.Lock()

    def stop(self) -> None:
        self._stop_event.set()
        with self._mu:
            resp = self._resp
        if resp is not None:
            _shut(resp)

    def run(self) -> None:
        st = self.store
        i = st._current
        while not self._stop_event.is_set():
            try:
                self._stream(i)
            except Compacted as e:
                log.warning("etcd watch: %s; events were lost, resynchronizing", e)
                try:
                    self.next = st.revision() + 1
                except StoreError:
                    pass
                else:
                    self._deliver([])
                continue
            except (requests.exceptions.RequestException, StoreError, ValueError, OSError) as e:
                if self._stop_event.is_set():
                    return
                log.info("etcd watch %s: %s; reconnecting", st._url(i), e)
            if self._stop_event.wait(RETRY):
                return
            i = (i + 1) % len(st.endpoints)  # the next endpoint (back to the only one)

    def _stream(self, i: int) -> None:
        st = self.store
        c = _client(*st.endpoints[i], st.timeout)  # its own session
        body: dict[str, Any] = {
            "create_request": {
                "key": _b64(st._prefix),
                "range_end": _b64(st._end),
                "start_revision": self.next,
            }
        }
        resp = c.session.post(
            c.get_url("/watch"), json=body, stream=True, timeout=(st.timeout, None)
        )
        with self._mu:
            self._resp = resp
        try:
            if self._stop_event.is_set():
                return
            for result in _results(resp, st._url(i)):
                for rev, batch in st._events(result):
                    if self._stop_event.is_set():
                        return
                    self.next = rev + 1
                    self._deliver(batch)
            if not self._stop_event.is_set():
                raise StoreError(f"etcd {st._url(i)}: the watch stream ended")
        finally:
            with self._mu:
                self._resp = None
            resp.close()
            c.session.close()

    def _deliver(self, batch: list[Event]) -> None:
        try:
            self.fn(batch)
        except Exception:
            log.exception("etcd watch: a subscriber failed")


def _shut(resp: requests.Response) -> None:
    """Unblock a thread reading `resp` (closing from another thread may not)."""
    try:
        fp = resp.raw._fp  # the http.client response under urllib3's
        sock = socket.fromfd(fp.fileno(), socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()
    except (AttributeError, OSError, ValueError):
        pass
