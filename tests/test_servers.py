"""A role with several servers (`api_base` a list; datagen.lm.servers): calls spread over them, a server that goes
down mid-run costing no sample and tried again after its cooldown, the counts per server in the run store and in
`datagen status`, one-line config errors, and the model travelling pickled (as to Ray actors). No assertion on
time: the servers' latency only keeps the run going long enough for what the test does mid-run."""

import asyncio
import multiprocessing
import pickle
import sqlite3
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import dspy
import pytest

from datagen.lm import servers
from datagen.text.chunking import Chunk
from datagen.workspace.config import Config, ModelSettings, load_config
from datagen.errors import DatagenError
from datagen.runs.generate import RunSettings, generate, run_chunks
from datagen.lm.roles import build_role_model, check_reachable
from datagen.samples import Sample
from datagen.lm.servers import Board, ServerSet, server_failure
from datagen.store import RunStore

from .conftest import run_cli, start_cli
from .fakes import HANG, FakeOpenAIServer, status
from .test_cli import assert_one_line_error

MODEL = "openai/fake-model"


@pytest.fixture(autouse=True)
def _fresh_board():
    """Each test starts with every server in service (the board is per process, by URL; ports are reused)."""
    servers.BOARD.reset()
    yield
    servers.BOARD.reset()


def write_config(workspace, *urls, cooldown=None, more=""):
    listed = ", ".join(f'"{url}"' for url in urls)
    extra = f"cooldown = {cooldown}\n" if cooldown is not None else ""
    (workspace / "datagen.toml").write_text(f'[models.task]\nmodel = "{MODEL}"\napi_base = [{listed}]\n{extra}{more}')


def write_corpus(folder, paragraphs: int):
    """A text of `paragraphs` distinct paragraphs: one chunk each at --max-tokens 32."""
    words = "the keeper climbed the stair each night and lit the lamp above the grey restless sea".split()
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(f"Paragraph {i}: " + " ".join(words[(i + j) % len(words)] for j in range(14)) + "."
                       for i in range(paragraphs))
    (folder / "corpus.txt").write_text(text)
    return folder


def server_rows(run) -> dict[str, dict]:
    with RunStore(run) as store:
        return {row["api_base"]: row for row in store.servers()}


# --- spreading, end to end -----------------------------------------------------------------------------------


def test_a_run_spreads_its_calls_over_both_servers_and_status_shows_each(workspace, tmp_path):
    out = tmp_path / "run"
    with FakeOpenAIServer(latency=0.02) as a, FakeOpenAIServer(latency=0.02) as b:
        write_config(workspace, a.url, b.url)
        run = run_cli("generate", "style_clone", "--input", "data/samples", "--out", str(out), "--max-tokens", "200",
                      "--concurrency", "2", cwd=workspace, timeout=300)
        assert run.returncode == 0, run.stderr
        shown = run_cli("status", str(out), cwd=workspace)
    assert shown.returncode == 0, shown.stderr
    with RunStore(out) as store:
        counts = store.counts()
    assert counts["done"] == counts["chunks"] > 0 and counts["failed"] == 0
    total = len(a.arrivals) + len(b.arrivals)
    assert total == counts["chunks"]  # one call a chunk, each sent once
    for server in (a, b):  # a fair share each: least loaded first, ties in turn
        assert len(server.arrivals) >= total // 3, (len(a.arrivals), len(b.arrivals))
    rows = server_rows(out)
    assert set(rows) == {a.url, b.url}
    for server in (a, b):
        row = rows[server.url]
        assert (row["role"], row["model"], row["calls"], row["failures"]) == ("task", MODEL, len(server.arrivals), 0)
        assert f"task server {server.url}: {len(server.arrivals)} calls, none failed" in shown.stderr
    assert "task server" in run.stderr  # generate's closing summary shows them too


def test_a_server_down_mid_run_costs_no_sample_and_is_tried_again_after_its_cooldown(workspace, tmp_path, caplog):
    """B is stopped once the two have answered 10 requests; once A has answered 10 more alone, B is started again
    on the same port: after its cooldown (0.2 s), B gets requests again. The 150 chunks at 20 ms a call keep the
    run going for seconds after that (at least 1.5 s with B's half of them), whatever the machine's load."""
    corpus = write_corpus(tmp_path / "corpus", 150)
    out = tmp_path / "run"
    with FakeOpenAIServer(latency=0.02) as a, FakeOpenAIServer(latency=0.02) as b:
        config = Config(models={"task": ModelSettings(model=MODEL, api_base=[a.url, b.url], cooldown=0.2)})
        port = int(b.url.rsplit(":", 1)[1].split("/")[0])
        back: list[FakeOpenAIServer] = []
        problems: list[str] = []

        def crash_and_restart():
            try:
                wait_for(lambda: len(a.arrivals) + len(b.arrivals) >= 10)
                b.stop()
                answered_then = len(a.arrivals)
                wait_for(lambda: len(a.arrivals) >= answered_then + 10)
                back.append(FakeOpenAIServer(latency=0.02, port=port).__enter__())
            except Exception as exc:  # reported by the test, not lost in the thread
                problems.append(repr(exc))

        chaos = threading.Thread(target=crash_and_restart)
        chaos.start()
        try:
            report = generate("style_clone", [corpus], out, settings=RunSettings(max_tokens=32, concurrency=2),
                              workspace=workspace, config=config)
        finally:
            chaos.join()
            for server in back:
                server.__exit__()
    assert not problems, problems
    assert f"the server at {b.url} failed a request" in caplog.text and "left out for 0.2 s" in caplog.text
    assert report.chunks == 150 and not report.failures and report.samples == 150
    with RunStore(out) as store:
        assert store.counts() == {"chunks": 150, "done": 150, "failed": 0}
    restarted = back[0]
    assert restarted.arrivals, "the server that came back got no request after its cooldown"
    rows = server_rows(out)
    assert rows[a.url]["failures"] == 0 and rows[a.url]["calls"] == len(a.arrivals)
    down = rows[b.url]
    assert down["failures"] >= 1 and "connect" in down["last_error"].lower()
    # Each request answered is counted once, on the server that answered it; B's count holds its failures too.
    assert down["calls"] - down["failures"] + rows[a.url]["calls"] == 150
    assert down["calls"] - down["failures"] <= len(b.arrivals) + len(restarted.arrivals)


@pytest.mark.timeout(900)  # a local Ray cluster's start takes minutes on a loaded machine
def test_on_ray_actors_a_server_down_mid_run_costs_no_sample_and_the_counts_reach_the_store(workspace, tmp_path):
    """As above, with the chunks run by two Ray actors (a local cluster started for the run): each actor spreads
    its own requests and finds B down by itself; the counts come back with each chunk's outcome."""
    pytest.importorskip("ray", reason="the [ray] extra is not installed")
    corpus = write_corpus(tmp_path / "corpus", 150)
    out = tmp_path / "run"
    with FakeOpenAIServer(latency=0.02) as a, FakeOpenAIServer(latency=0.02) as b:
        write_config(workspace, a.url, b.url, cooldown=0.2)
        run = start_cli("generate", "style_clone", "--input", str(corpus), "--out", str(out), "--max-tokens", "32",
                        "--concurrency", "4", "--executor", "ray", "--actors", "2", cwd=workspace)
        try:
            wait_for(lambda: len(a.arrivals) + len(b.arrivals) >= 10 or run.poll() is not None, limit=300)
            b.stop()
            _, stderr = run.communicate(timeout=600)
        finally:
            if run.poll() is None:
                run.kill()
        shown = run_cli("status", str(out), cwd=workspace)
    assert run.returncode == 0, stderr
    with RunStore(out) as store:
        assert store.counts() == {"chunks": 150, "done": 150, "failed": 0}
    rows = server_rows(out)
    assert rows[a.url]["failures"] == 0 and rows[a.url]["calls"] == len(a.arrivals)
    assert rows[b.url]["failures"] >= 1 and rows[b.url]["calls"] - rows[b.url]["failures"] <= len(b.arrivals)
    assert rows[a.url]["calls"] + rows[b.url]["calls"] - rows[b.url]["failures"] == 150
    assert f"task server {b.url}: {rows[b.url]['calls']:,} calls, {rows[b.url]['failures']:,} failed" in shown.stderr


def wait_for(condition, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the run never got there")
        time.sleep(0.005)


def test_every_server_down_fails_as_one_server_does_and_none_reachable_at_start_is_refused(tmp_path):
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        model = build_role_model(ModelSettings(model=MODEL, api_base=[a.url, b.url], num_retries=0), "task")
        a.stop()
        b.stop()
        with pytest.raises(DatagenError, match=r"cannot reach openai/fake-model at any of its 2 servers: http://"):
            check_reachable(model)
        with pytest.raises(Exception, match="Connection refused|connect"):
            model.lm.copy(cache=False)("hello")


def test_a_server_that_does_not_answer_at_start_is_left_out_and_the_run_goes_on(workspace, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", 6)
    with FakeOpenAIServer() as a, FakeOpenAIServer() as dead:
        dead.stop()
        # Left out for longer than the run can take: a trial request would find it down again.
        config = Config(models={"task": ModelSettings(model=MODEL, api_base=[dead.url, a.url], cooldown=3600)})
        report = generate("style_clone", [corpus], tmp_path / "run", settings=RunSettings(max_tokens=32),
                          workspace=workspace, config=config)
    assert report.chunks == 6 and not report.failures
    assert len(a.arrivals) == 6
    assert dead.url not in server_rows(tmp_path / "run")  # left out from the start: never sent a request


# --- both engines, sync and async ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", [None, "litellm"], ids=["native", "litellm"])
def test_a_request_on_a_server_that_went_down_goes_to_another_on_either_engine_sync_and_async(engine):
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        settings = ModelSettings(model=MODEL, api_base=[a.url, b.url], engine=engine, num_retries=0, cooldown=60)
        lm = build_role_model(settings, "task").lm.copy(cache=False)
        record: list = []
        servers.tries.set(record)
        for i in range(4):
            assert lm(f"before {i}")
        assert len(a.arrivals) == len(b.arrivals) == 2
        b.stop()
        for i in range(3):  # num_retries=0: only the move to the other server saves these
            assert lm(f"after {i}")

        async def more():
            servers.tries.set(record)
            return [await lm.acall(f"async {i}") for i in range(3)]
        assert all(asyncio.run(more()))
    assert len(a.arrivals) == 2 + 3 + 3
    failed = [(url, error) for _, url, error in record if error]
    assert [url for url, _ in failed] == [b.url]  # tried once, then out for its cooldown
    assert servers.BOARD.state(b.url).out_until is not None


def test_a_server_that_hangs_past_the_timeout_is_left_out_and_the_request_answered_by_another():
    with FakeOpenAIServer(faults=lambda source, attempt: HANG) as hung, FakeOpenAIServer() as a:
        settings = ModelSettings(model=MODEL, api_base=[hung.url, a.url], timeout=1, num_retries=0, cooldown=60)
        lm = build_role_model(settings, "task").lm.copy(cache=False)
        record: list = []
        servers.tries.set(record)
        assert all(lm(f"question {i}") for i in range(4))
    assert len(a.arrivals) == 4
    assert [url for _, url, error in record if error] == [hung.url]  # once, then out for its cooldown
    assert "timeout" in next(error for _, _, error in record if error).lower()


# --- the chooser, on a clock that stands still ---------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_least_loaded_server_is_chosen_and_ties_go_in_turn():
    board, urls = Board(Clock()), ("http://a/v1", "http://b/v1", "http://c/v1")
    first = [board.choose(urls, [])[0] for _ in range(3)]
    assert sorted(first) == sorted(urls)  # one request each in flight
    board.release("http://b/v1", False, "answered", None, 10)
    assert board.choose(urls, []) == ("http://b/v1", False)  # the only one with nothing in flight
    for url in urls:
        board.release(url, False, "answered", None, 10)
    turns = [board.choose(urls, [])[0] for _ in range(6)]
    for url in turns:
        board.release(url, False, "answered", None, 10)
    assert {url: turns.count(url) for url in urls} == dict.fromkeys(urls, 2)


def test_a_failed_server_is_out_for_its_cooldown_then_gets_one_trial_request():
    clock = Clock()
    board, urls = Board(clock), ("http://a/v1", "http://b/v1")
    url, trial = board.choose(urls, [])
    board.release(url, trial, "failed", "connection refused", 10)
    other = next(u for u in urls if u != url)
    assert board.choose(urls, [url]) == (other, False)  # the request moves on
    board.release(other, False, "answered", None, 10)
    assert {board.choose(urls, [])[0] for _ in range(4)} == {other}  # out: every request goes to the other
    for _ in range(4):
        board.release(other, False, "answered", None, 10)
    clock.now += 10.5
    assert board.choose(urls, []) == (url, True)  # back after its cooldown: one trial request...
    assert board.choose(urls, []) == (other, False)  # ...while the others keep away
    board.release(other, False, "answered", None, 10)
    board.release(url, True, "failed", "connection refused", 10)  # the trial failed: out again
    assert board.choose(urls, [])[0] == other
    board.release(other, False, "answered", None, 10)
    clock.now += 10.5
    assert board.choose(urls, []) == (url, True)
    board.release(url, True, "answered", None, 10)  # the trial answered: back in service
    assert board.state(url).out_until is None
    assert sorted(board.choose(urls, [])[0] for _ in range(2)) == sorted(urls)


def test_with_every_server_out_the_one_due_back_first_is_tried_and_a_request_tries_each_once():
    clock = Clock()
    board, urls = Board(clock), ("http://a/v1", "http://b/v1")
    board.take_out("http://a/v1", "down", 30)
    board.take_out("http://b/v1", "down", 10)
    assert board.choose(urls, []) == ("http://b/v1", True)  # never waits: the soonest back is tried
    assert board.choose(urls, ["http://b/v1"]) is None  # a request that tried one already gives up to DSPy's retry
    board.release("http://b/v1", True, "failed", "down", 10)
    assert board.choose(urls, ["http://a/v1", "http://b/v1"]) is None


def test_what_counts_as_the_server_failing():
    from dspy import lm15

    assert server_failure(lm15.TransportError("failed to connect"))
    assert server_failure(lm15.ServerError("bad gateway", status=502))
    assert server_failure(lm15.TimeoutError("read timed out"))
    assert server_failure(ConnectionRefusedError(111, "Connection refused"))
    assert not server_failure(lm15.RateLimitError("slow down", status=429))
    assert not server_failure(lm15.InvalidRequestError("bad request", status=400))
    assert not server_failure(ValueError("a parse error"))


# --- config ----------------------------------------------------------------------------------------------------


def test_a_list_of_servers_is_read_from_the_file_the_environment_and_a_comma_separated_flag(tmp_path):
    (tmp_path / "datagen.toml").write_text('[models.task]\nmodel = "openai/m"\n'
                                           'api_base = ["http://a:8000/v1", "http://b:8000/v1"]\ncooldown = 2.5\n')
    config = load_config(tmp_path, environ={})
    assert config.role("task").api_bases == ("http://a:8000/v1", "http://b:8000/v1")
    assert config.role("task").cooldown == 2.5
    assert config.role("judge").api_bases == ("http://a:8000/v1", "http://b:8000/v1")  # falls back as ever
    env = load_config(tmp_path, environ={"DATAGEN_TASK_API_BASE": "http://c/v1, http://d/v1"})
    assert env.role("task").api_bases == ("http://c/v1", "http://d/v1")
    assert ModelSettings(api_base="http://a/v1").api_base == "http://a/v1"  # one URL stays a string
    assert ModelSettings(api_base=["http://a/v1"]).api_base == "http://a/v1"
    assert ModelSettings().api_bases == ()


@pytest.mark.parametrize("value, words", [
    ('["http://a/v1", "http://a/v1/"]', "is listed twice (servers 1 and 2)"),
    ("[]", "an empty list"),
    ('["http://a/v1", ""]', "server 2 of the list is empty"),
    ('["http://a/v1", 8000]', "server 2 of the list is 8000"),
    ('["http://a/v1", "a:8000"]', "server 2 of the list, 'a:8000', is not an http(s) URL"),
    ("8000", "expected a URL or a list of URLs"),
])
def test_a_bad_server_list_is_a_one_line_error_naming_the_key(tmp_path, value, words):
    (tmp_path / "datagen.toml").write_text(f'[models.task]\nmodel = "openai/m"\napi_base = {value}\n')
    with pytest.raises(DatagenError) as error:
        load_config(tmp_path, environ={})
    message = str(error.value)
    assert "\n" not in message and "models.task.api_base" in message and words in message, message


def test_a_bad_server_list_is_a_one_line_error_on_the_command_line(tmp_path):
    (tmp_path / "datagen.toml").write_text('[models.task]\nmodel = "openai/m"\n'
                                           'api_base = ["http://a/v1", "http://a/v1"]\n')
    assert_one_line_error(run_cli("models", cwd=tmp_path), "datagen.toml", "models.task.api_base", "listed twice")
    (tmp_path / "datagen.toml").write_text('[models.task]\nmodel = "openai/m"\ncooldown = 0\n')
    assert_one_line_error(run_cli("models", cwd=tmp_path), "models.task.cooldown")
    (tmp_path / "datagen.toml").unlink()
    flag = run_cli("generate", "style_clone", "--input", "data", "--out", "out", "--model", "openai/m", "--api-base",
                   "http://a/v1,http://b/v1,http://a/v1", cwd=tmp_path)
    assert_one_line_error(flag, "--api-base", "http://a/v1 is listed twice (servers 1 and 3)")


def test_datagen_models_lists_every_server(tmp_path):
    write_config(tmp_path, "http://a:8000/v1", "http://b:8000/v1")
    shown = run_cli("models", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "http://a:8000/v1" in shown.stdout and "http://b:8000/v1" in shown.stdout


def test_one_api_base_builds_the_model_as_before(tmp_path):
    model = build_role_model(ModelSettings(model=MODEL, api_base="http://127.0.0.1:9/v1"), "task")
    assert servers.servers_of(model.lm) is None and model.lm.kwargs["api_base"] == "http://127.0.0.1:9/v1"
    many = build_role_model(ModelSettings(model=MODEL, api_base=["http://h1:8000/v1", "http://h2:8000/v1"]), "judge")
    assert servers.servers_of(many.lm) == ServerSet("judge", ("http://h1:8000/v1", "http://h2:8000/v1"),
                                                    servers.DEFAULT_COOLDOWN)
    assert many.lm.kwargs["api_base"] == "http://h1:8000/v1" and many.name == MODEL
    assert servers.servers_of(many.with_settings(temperature=0.5).lm) == servers.servers_of(many.lm)


# --- the run store: keys, older stores, other processes ---------------------------------------------------------


def test_no_api_key_reaches_the_store_or_status(workspace, tmp_path):
    key = "sk-test-0123456789abcdef"
    corpus = write_corpus(tmp_path / "corpus", 6)
    out = tmp_path / "run"
    with (FakeOpenAIServer() as a,
          FakeOpenAIServer(faults=lambda source, attempt: status(503, message=f"overloaded; your key {key}")) as bad):
        write_config(workspace, bad.url, a.url, more='api_key_env = "FLEET_CREDENTIAL"\n')
        run = run_cli("generate", "style_clone", "--input", str(corpus), "--out", str(out), "--max-tokens", "32",
                      cwd=workspace, env={"FLEET_CREDENTIAL": key}, timeout=300)
        shown = run_cli("status", str(out), cwd=workspace)
    assert run.returncode == 0, run.stderr
    assert len(a.arrivals) == 6 and len(bad.arrivals) >= 1
    row = server_rows(out)[bad.url]
    assert row["failures"] == row["calls"] >= 1 and "overloaded" in row["last_error"]
    assert key.encode() not in (out / "run.db").read_bytes()
    assert key not in run.stderr + shown.stderr and "[redacted]" in row["last_error"]
    assert f"task server {bad.url}: {row['calls']} calls, {row['failures']} failed (last: " in shown.stderr


def test_a_store_from_before_the_servers_table_opens_and_shows_none(tmp_path):
    run = tmp_path / "run"
    with RunStore(run) as store:
        store.add_chunks([Chunk("c1", "s.txt", 0, 4, "text", 1)])
    with sqlite3.connect(run / "run.db") as db:
        db.execute("DROP TABLE servers")
    with sqlite3.connect(f"file:{run / 'run.db'}?mode=ro", uri=True) as db:
        assert RunStore.over(db).servers() == []  # read-only, as datagen view reads
    shown = run_cli("status", str(run), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "server" not in shown.stderr
    with RunStore(run) as store:  # opened for writing, the table is made
        assert store.servers() == []


class Echo(dspy.Module):
    """A program of one LM call a chunk."""

    def __init__(self):
        super().__init__()
        self.rewrite = dspy.Predict("passage -> rewritten")

    def forward(self, chunk):
        return dspy.Prediction(samples=[Sample(input=chunk, output=self.rewrite(passage=chunk).rewritten)])


def _run_elsewhere(pickled: bytes) -> bytes:
    """In another process (as a Ray actor is): the model and program unpickled, the chunks run there, the outcomes
    pickled back."""
    program, model, chunks = pickle.loads(pickled)
    return pickle.dumps(list(run_chunks(program, model, chunks, concurrency=2)))


def test_the_model_travels_pickled_and_the_counts_come_back_with_the_outcomes(tmp_path):
    """As with `--executor ray`: the program and model pickled with cloudpickle (Ray's), run in another process,
    the outcomes pickled back and recorded here."""
    cloudpickle = pytest.importorskip("cloudpickle")
    chunks = [Chunk(f"c{i}", "s.txt", i, i + 1, f"passage number {i}", 3) for i in range(8)]
    with FakeOpenAIServer() as a, FakeOpenAIServer() as b:
        model = build_role_model(ModelSettings(model=MODEL, api_base=[a.url, b.url]), "task")
        payload = cloudpickle.dumps((Echo(), model, chunks))
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as elsewhere:
            outcomes = pickle.loads(elsewhere.submit(_run_elsewhere, payload).result(timeout=300))
    assert len(outcomes) == 8 and not any(o.failure for o in outcomes)
    assert len(a.arrivals) == len(b.arrivals) == 4
    with RunStore(tmp_path / "run") as store:
        store.add_chunks(chunks)
        for outcome in outcomes:
            store.record(outcome)
        rows = {row["api_base"]: (row["calls"], row["failures"]) for row in store.servers()}
    assert rows == {a.url: (4, 0), b.url: (4, 0)}
