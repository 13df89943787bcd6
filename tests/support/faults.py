"""A TCP proxy in front of a real registry that cuts the line at a chosen moment.

Used for the one fault a registry cannot be made to produce on cue: a client
connection dying exactly between two chunks of a blob upload. After forwarding
the registry's answer to the first PATCH, the proxy closes every connection and
refuses new ones until `allow()` is called.
"""

from __future__ import annotations

import contextlib
import socket
import threading


def _listen() -> tuple[socket.socket, int]:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    return listener, int(listener.getsockname()[1])


class CutAfterFirstPatch:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener, self.port = _listen()
        self.host = f"127.0.0.1:{self.port}"
        self.blocked = False
        self.armed = True
        self.cut = threading.Event()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def allow(self) -> None:
        self.blocked = False
        self.armed = False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.blocked:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.conns += [client, server]
            state = {"patches": 0}
            threading.Thread(target=self._pipe, args=(client, server, state, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, state, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, state: dict[str, int], upstream: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if upstream:
                    if self.blocked:  # after the cut nothing more reaches the registry
                        break
                    state["patches"] += data.count(b"PATCH /v2/")
                    dst.sendall(data)
                    continue
                trigger = self.armed and state["patches"] and b"HTTP/1.1 202" in data and b"\r\n\r\n" in data
                if trigger:
                    self.armed = False
                    self.blocked = True  # before the client can see the answer and send the next chunk
                dst.sendall(data)
                if trigger:
                    self.cut.set()  # before the close, which is what the client will see
                    self._close_all()
                    return
        except OSError:
            pass
        finally:
            _close(src, dst)

    def _close_all(self) -> None:
        with self.lock:
            for s in self.conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            _close(*self.conns)
            self.conns.clear()

    def close(self) -> None:
        self.listener.close()
        self._close_all()


class Answer503First:
    """Answers the first `n` HTTP requests with 503 Service Unavailable itself, then forwards
    everything to the registry: a transient fault a healthy registry never produces on cue."""

    def __init__(self, upstream_port: int, n: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.left = n
        self.served = 0
        self.lock = threading.Lock()
        self.listener, self.port = _listen()
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self.lock:
            fail = self.left > 0
            if fail:
                self.left -= 1
                self.served += 1
        if fail:
            with contextlib.suppress(OSError):
                client.recv(1 << 16)
                client.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            client.close()
            return
        server = socket.create_connection(self.upstream)
        for src, dst in ((client, server), (server, client)):
            threading.Thread(target=_pipe, args=(src, dst), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _close(src, dst)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()


class BlackHole:
    """A registry that stopped answering: accepts connections, reads what is sent, never replies."""

    def __init__(self) -> None:
        self.listener, self.port = _listen()
        self.host = f"127.0.0.1:{self.port}"
        self.accepted = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(client)
            self.accepted.set()
            threading.Thread(target=self._swallow, args=(client,), daemon=True).start()

    @staticmethod
    def _swallow(client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while client.recv(1 << 16):
                pass

    def close(self) -> None:
        _close(self.listener, *self.conns)
