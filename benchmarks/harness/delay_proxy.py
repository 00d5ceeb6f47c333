"""A TCP proxy that delays each direction by a fixed time: a phone's Wi-Fi on loopback.

This machine's kernel has no netem, so the benchmark puts one of these in front
of each sshd. Every chunk read is forwarded ``delay_s`` seconds after it
arrived, in order, so a request/response round trip costs ``2 * delay_s`` more.
"""

from __future__ import annotations

import queue
import socket
import threading
import time

__all__ = ["DelayProxy"]


class DelayProxy:
    """Listen on a free 127.0.0.1 port and forward to ``(host, port)`` with a delay.

    Args:
        upstream: Where to forward.
        delay_s: One-way delay in seconds added to every chunk, in both directions.
    """

    def __init__(self, upstream: tuple[str, int], *, delay_s: float) -> None:
        self.upstream = upstream
        self.delay_s = delay_s
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="delay-proxy").start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            up.settimeout(None)
            for s in (client, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._socks.append(s)
            self._pipe(client, up)
            self._pipe(up, client)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        q: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def read() -> None:
            while True:
                try:
                    data = src.recv(1 << 16)
                except OSError:
                    data = b""
                q.put((time.monotonic() + self.delay_s, data))
                if not data:
                    return

        def write() -> None:
            while True:
                due, data = q.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    if not data:
                        dst.shutdown(socket.SHUT_WR)
                        return
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=write, daemon=True).start()

    def close(self) -> None:
        """Stop accepting and close every forwarded connection."""
        self._stop.set()
        self._server.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
