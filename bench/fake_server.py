"""The fake OpenAI-compatible server (tests/fakes.py) in a process of its own.

A benchmark measures the client: the server's CPU time and memory must not be counted as the client's, so it
runs apart. It keeps no request bodies; the parent asks it over a pipe how many requests it has received ("count"),
or for all its counters ("counts": the Batch API's too).
"""

import multiprocessing
import zlib

_POOL = ("apple bridge copper dancer eagle forest granite harvest island jacket kettle ladder marble needle orchard "
         "pepper quarry saddle timber velvet wagon yellow zephyr anchor blanket castle desert engine feather glacier "
         "hammer insect jungle kingdom lemon mirror nickel ocean pillow rocket shadow tunnel umbrella valley whistle "
         "blossom canyon dolphin ember falcon garlic hollow ivory jasmine lantern meadow nectar oyster pebble").split()


def _rating(passage: str) -> str:
    """A judge's 1-5 rating that varies with the passage, as a real judge's would."""
    return str(1 + len(passage) % 5)


def reworded(text: str) -> str:
    """The benchmark model's rephrase: tests.fakes.plain's (the passage's words reordered, lower-cased), with every
    fourth word replaced by another English word picked by the word it replaces, not always "plain". With "plain"
    in every answer, every two answers shared its shingles: the near-duplicate screening of the export then checked
    almost every pair, which real rewrites, like real passages, never make it do (bench/README.md, issue 29)."""
    from tests.fakes import plain

    words = plain(text).split()
    return " ".join(_POOL[(zlib.crc32(text.encode()) + i) % len(_POOL)] if word == "plain" else word
                    for i, word in enumerate(words))


def _serve(latency: float, judge: bool, conn) -> None:
    from tests.fakes import FakeOpenAIServer

    by_field = {"rating": _rating} if judge else None
    with FakeOpenAIServer(latency=latency, record=False, by_field=by_field, respond=reworded) as server:
        conn.send(server.url)
        while (message := conn.recv()) in ("count", "counts", "times"):
            if message == "count":
                conn.send(len(server.arrivals))
            elif message == "times":
                conn.send(list(server.arrivals))
            else:
                conn.send({"arrivals": len(server.arrivals), "chat_requests": server.chat_requests,
                           "batches_created": server.batches_created, "uploads": server.uploads,
                           "batch_lines": server.batch_lines})


class ServerProcess:
    """`with ServerProcess(latency=0.2) as server:` serves on `server.url`; `server.count()` is the number of
    requests it has received so far, `server.times()` when each arrived, and `server.counts()` a dict of its counters:
    `arrivals` (the same number), `chat_requests` (requests to /v1/chat/completions itself), `batches_created`,
    `uploads` and `batch_lines` (lines of batch jobs answered). With `judge`, judges' ratings are numbers (1-5, by the passage)."""

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

    def times(self) -> list[float]:
        """When each request arrived (`time.monotonic()`, the machine's clock: comparable across its processes)."""
        self._conn.send("times")
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
