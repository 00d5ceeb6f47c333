"""A ProxyCommand for the tests: relay stdin/stdout to HOST PORT, noting each use in LOG.

Usage (in ssh_config): ``ProxyCommand python3 relay.py %h %p LOG``.
"""

from __future__ import annotations

import os
import socket
import sys
import threading


def main() -> None:
    host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(log, "a") as fh:
        fh.write(f"{host}:{port}\n")
    sock = socket.create_connection((host, port))

    def upstream() -> None:
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := sock.recv(65536):
        os.write(1, data)


if __name__ == "__main__":
    main()
