"""A TCP proxy between the job and the moto server, so a test can take the DynamoDB ledger away and back: refused
at once (`pause`), or hung, accepting and never answering (`hang`)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class TcpProxy:
    """Forwards a loopback port to `target`. `pause()` is an outage until `resume()`: open connections are cut and
    every new one is reset as soon as it arrives, counted in `refused` (so a test knows the job felt the outage).
    `hang()` is the other kind of outage, a ledger that stops answering: new connections are accepted and held
    open without a byte in either direction, and what callers send on open connections is dropped (both counted in
    `held`), so only the callers' own timeouts end their requests. Each forwarded connection is two pump threads.
    """

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.refused = 0
        self.held = 0
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._down = threading.Event()
        self._hung = threading.Event()
        self._held: list[socket.socket] = []
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def to(cls, url: str) -> TcpProxy:
        host, _, port = url.split("://", 1)[-1].rstrip("/").partition(":")
        return cls(host, int(port))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((self.host, 0))
        listener.listen(64)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), name="proxy-accept", daemon=True)
        self._thread.start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while not self._closing.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._down.is_set():
                self._reset(client)
                continue
            if self._hung.is_set():
                with self._lock:
                    self.held += 1
                    self._held.append(client)
                continue
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:  # checked again under the lock: a pause in between must cut this one too
                late = self._down.is_set()
                if not late:
                    self._conns.update((client, upstream))
            if late:
                upstream.close()
                self._reset(client)
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), name="proxy-pump", daemon=True).start()

    def _reset(self, client: socket.socket) -> None:
        """Close with a TCP reset (SO_LINGER 0): the caller's request fails at once, as against a dead endpoint."""
        with self._lock:
            self.refused += 1
        with contextlib.suppress(OSError):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self._hung.is_set():  # what arrives is swallowed, nothing answers
                    with self._lock:
                        self.held += 1
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._close(s)

    def _close(self, s: socket.socket) -> None:
        with self._lock:
            self._conns.discard(s)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def _cut_all(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            self._close(s)

    def pause(self) -> None:
        """The outage begins: cut every open connection; new ones are reset (and counted) until `resume()`."""
        with self._lock:
            self._down.set()
        self._cut_all()

    def hang(self) -> None:
        """The ledger stops answering: connections are accepted, requests swallowed, until `resume()`."""
        self._hung.set()

    def resume(self) -> None:
        """The outage ends: forward again; connections held while hung are closed (their callers gave up)."""
        self._down.clear()
        self._hung.clear()
        self._drop_held()

    def _drop_held(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for s in held:
            self._close(s)

    def close(self) -> None:
        self._closing.set()
        if self._thread:
            self._thread.join(5)
        if self._listener:
            self._listener.close()
            self._listener = None
        self._drop_held()
        self._cut_all()
