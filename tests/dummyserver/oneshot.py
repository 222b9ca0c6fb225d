"""The OneShotServer: a bare raw-socket server that answers every connection with one fixed
payload, then closes (so a body read to close ends), keeping each request head it read."""

from __future__ import annotations

import socket
import threading

__all__ = ("OneShotServer",)


class OneShotServer:
    """Answers every connection with ``payload`` and closes it (so read-to-close ends); keeps
    each request head it read in ``heads``."""

    def __init__(self) -> None:
        self.payload = b""
        self.heads: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        piece = conn.recv(65536)
                        if not piece:
                            break
                        data += piece
                    self.heads.append(data.partition(b"\r\n\r\n")[0])
                    conn.sendall(self.payload)
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        self.listener.close()
