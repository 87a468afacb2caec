"""The fake OpenAI-compatible server (tests/fakes.py) in a process of its own.

A benchmark measures the client: the server's CPU time and memory must not be counted as the client's, so it
runs apart. It keeps no request bodies; the parent asks it over a pipe how many requests it has answered.
"""

import multiprocessing


def _serve(latency: float, conn) -> None:
    from tests.fakes import FakeOpenAIServer

    with FakeOpenAIServer(latency=latency, record=False) as server:
        conn.send(server.url)
        while conn.recv() == "count":
            conn.send(len(server.arrivals))


class ServerProcess:
    """`with ServerProcess(latency=0.2) as server:` serves on `server.url`; `server.count()` is the number of
    requests it has received so far."""

    def __init__(self, latency: float):
        context = multiprocessing.get_context("spawn")
        self._conn, self._child_conn = context.Pipe()
        self._process = context.Process(target=_serve, args=(latency, self._child_conn), daemon=True)
        self.url = ""

    def count(self) -> int:
        self._conn.send("count")
        return self._conn.recv()

    def __enter__(self) -> "ServerProcess":
        self._process.start()
        self._child_conn.close()  # so that a server that died reads as EOF here, not as a hang
        self.url = self._conn.recv()
        return self

    def __exit__(self, *exc) -> None:
        self._conn.send("stop")
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()
