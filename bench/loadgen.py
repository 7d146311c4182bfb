"""A lean HTTP/1.1 load generator for the benchmarks: one blocking socket per
connection (keep-alive, TCP_NODELAY), hand-written requests, Content-Length and
chunked responses read without a client library, so that it costs little of the CPU
it measures."""
from __future__ import annotations

import socket
import statistics
import threading
import time
from dataclasses import dataclass


class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> socket.socket:
        s = socket.create_connection((self.host, self.port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.buf = s, b""
        return s

    def _fill(self, s: socket.socket) -> None:
        chunk = s.recv(262144)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buf += chunk

    def request(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        s = self.sock or self._connect()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n{head}Content-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        while b"\r\n\r\n" not in self.buf:
            self._fill(s)
        raw_head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        resp_headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            resp_headers[name.strip().lower()] = value.strip()
        if "content-length" in resp_headers:
            n = int(resp_headers["content-length"])
            while len(self.buf) < n:
                self._fill(s)
            content, self.buf = self.buf[:n], self.buf[n:]
        else:  # chunked
            parts = []
            while True:
                while b"\r\n" not in self.buf:
                    self._fill(s)
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill(s)
                parts.append(self.buf[:size])
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
            content = b"".join(parts)
        if resp_headers.get("connection", "").lower() == "close":
            self.close()
        return status, resp_headers, content

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass
class Result:
    p50: float
    p99: float
    rps: float
    errors: int
    own_p50: float | None


def run_load(url: str, headers: dict[str, str], body: bytes, concurrency: int, total: int) -> Result:
    """`total` requests over `concurrency` keep-alive connections; latencies in ms."""
    hostport, _, path = url.removeprefix("http://").partition("/")
    host, port = hostport.split(":")
    latencies: list[float] = []
    own: list[float] = []
    errors = [0]
    lock = threading.Lock()
    left = [total]

    def worker() -> None:
        conn = Connection(host, int(port))
        try:
            conn.request("/" + path, headers, body)  # warm the connection
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                start = time.perf_counter()
                try:
                    status, h, _ = conn.request("/" + path, headers, body)
                except (OSError, ValueError):
                    conn.close()
                    status, h = 599, {}
                ms = (time.perf_counter() - start) * 1000
                with lock:
                    if status != 200:
                        errors[0] += 1
                    latencies.append(ms)
                    if "x-tollbooth-overhead-ms" in h:
                        own.append(float(h["x-tollbooth-overhead-ms"]))
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return Result(statistics.median(latencies), latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                  len(latencies) / wall, errors[0], statistics.median(own) if own else None)
