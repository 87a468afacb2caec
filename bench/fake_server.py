"""The fake OpenAI-compatible server (tests/fakes.py) in a process of its own.

A benchmark measures the client: the server's CPU time and memory must not be counted as the client's, so it
runs apart. It keeps no request bodies; the parent asks it over a pipe how many requests it has received ("count"),
or for all its counters ("counts": the Batch API's too).
"""

import multiprocessing


def _rating(passage: str) -> str:
    """A judge's 1-5 rating that varies with the passage, as a real judge's would."""
    return str(1 + len(passage) % 5)


def _serve(latency: float, judge: bool, conn) -> None:
    from tests.fakes import FakeOpenAIServer

    by_field = {"rating": _rating} if judge else None
    with FakeOpenAIServer(latency=latency, record=False, by_field=by_field) as server:
        conn.send(server.url)
        while (message := conn.recv()) in ("count", "counts"):
            if message == "count":
                conn.send(len(server.arrivals))
            else:
                conn.send({"arrivals": len(server.arrivals), "chat_requests": server.chat_requests,
                           "batches_created": server.batches_created, "uploads": server.uploads,
                           "batch_lines": server.batch_lines})


class ServerProcess:
    """`with ServerProcess(latency=0.2) as server:` serves on `server.url`; `server.count()` is the number of
    requests it has received so far, and `server.counts()` a dict of its counters: `arrivals` (the same number),
    `chat_requests` (requests to /v1/chat/completions itself), `batches_created`, `uploads` and `batch_lines`
    (lines of batch jobs answered). With `judge`, judges' ratings are numbers (1-5, by the passage)."""

    def __init__(self, latency: float, judge: bool = False):
        context = multiprocessing.get_context("spawn")
        self._conn, self._child_conn = context.Pipe()
        self._process = context.Process(target=_serve, args=(latency, judge, self._child_conn), daemon=True)
        self.url = ""

    def count(self) -> int:
        self._conn.send("count")
        return self._conn.recv()

    def counts(self) -> dict[str, int]:
        self._conn.send("counts")
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
