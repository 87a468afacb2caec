"""datagen.lm.hooks is the one place DSPy and the socket reads are extended: importing any datagen module changes
nothing in other libraries; `install_hooks()` wraps each attempt of an LM call in the stated order (request
watchers -> server spread -> rate gate -> deadline -> DSPy's attempt), once however often it is called; a role model
made, or unpickled in another process, installs them; and a socket read of a thread with no datagen deadline is
never bounded."""

import asyncio
import inspect
import logging
import pickle
import socket
import ssl
import subprocess
import sys
import threading
from types import SimpleNamespace

import dspy
import pytest
from dspy.clients import capabilities, costs, execution, model_metadata
from dspy.clients.engines.lm15_engine import AsyncLM15Engine
from dspy.utils.exceptions import LMTimeoutError

from datagen.errors import DatagenError
from datagen.lm import RoleModel, install_hooks
from datagen.lm.deadline import bound_attempt
from datagen.lm.hooks import check_dspy
from datagen.lm.roles import build_role_model
from datagen.workspace.config import ModelSettings

from .conftest import ROOT
from .fakes import FakeOpenAIServer

# What datagen wraps: (owner, attribute).
OWNERS = {"socket.socket": socket.socket, "ssl.SSLSocket": ssl.SSLSocket, "execution": execution, "costs": costs,
          "capabilities": capabilities, "dspy.Predict": dspy.Predict, "AsyncLM15Engine": AsyncLM15Engine}
HOOKED = [("socket.socket", "recv"), ("socket.socket", "recv_into"), ("ssl.SSLSocket", "recv"),
          ("ssl.SSLSocket", "recv_into"), ("execution", "_attempt"), ("execution", "_aattempt"),
          ("execution", "_delay"), ("execution", "_cached"), ("execution", "RouterConfig"), ("costs", "model_info"),
          ("capabilities", "model_info"), ("execution", "execute"), ("execution", "aexecute"),
          ("dspy.Predict", "__call__"), ("dspy.Predict", "acall"), ("AsyncLM15Engine", "complete")]
HOOKED_NOW = "[" + ", ".join(f"{owner}.{name}" for owner, name in HOOKED) + "]"  # in a fresh interpreter
IMPORTS = ("import socket, ssl\nimport dspy\nfrom dspy.clients import capabilities, costs, execution\n"
           "from dspy.clients.engines.lm15_engine import AsyncLM15Engine\n")


def run_python(code: str) -> str:
    """`code` run by a fresh interpreter in the repository; its stdout."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def hooked_now() -> list:
    return [getattr(OWNERS[owner], name) for owner, name in HOOKED]


def chain(function) -> list:
    """`function`, what it wraps, what that wraps..., down to the original."""
    found = [function]
    while hasattr(found[-1], "__wrapped__"):
        found.append(found[-1].__wrapped__)
    return found


def test_importing_every_datagen_module_changes_nothing_in_other_libraries():
    code = IMPORTS + f"""
import importlib, logging, pkgutil
before = {HOOKED_NOW}
lm_log = logging.getLogger("dspy.clients.lm")
log_before = (lm_log.level, list(lm_log.filters))
import datagen
for module in pkgutil.walk_packages(datagen.__path__, "datagen."):
    if "_builtin" not in module.name:
        importlib.import_module(module.name)
import litellm  # after datagen: its price list stays the bundled one (LITELLM_LOCAL_MODEL_COST_MAP)
get_model_info = litellm.get_model_info
after = {HOOKED_NOW}
print([name for name, old, new in zip({HOOKED!r}, before, after) if old is not new])
print(log_before == (lm_log.level, list(lm_log.filters)))
print(litellm.get_model_info is get_model_info and "datagen" not in (litellm.get_model_info.__module__ or ""))
"""
    changed, logger_kept, litellm_kept = run_python(code).splitlines()
    assert changed == "[]"
    assert logger_kept == "True" and litellm_kept == "True"


def test_each_attempt_passes_the_watchers_the_spread_the_gate_and_the_deadline_in_that_order():
    install_hooks()
    for name, wrappers in (("_attempt", ["attempt_watched", "attempt_spread", "attempt_gated",
                                         "attempt_within_timeout"]),
                           ("_aattempt", ["aattempt_watched", "aattempt_spread", "aattempt_gated",
                                          "aattempt_within_timeout"])):
        found = chain(getattr(execution, name))
        assert [f.__name__ for f in found] == [*wrappers, name]
        assert [f.__module__ for f in found] == ["datagen.lm.gate", "datagen.lm.servers", "datagen.lm.gate",
                                                 "datagen.lm.deadline", "dspy.clients.execution"]
        assert inspect.unwrap(getattr(execution, name)) is found[-1]
    assert inspect.iscoroutinefunction(execution._aattempt)


def test_the_other_hooks_wrap_what_dspy_and_the_socket_module_have():
    install_hooks()
    for owner in (socket.socket, ssl.SSLSocket):
        for read in ("recv", "recv_into"):
            wrapper = getattr(owner, read)
            assert wrapper.__module__ == "datagen.lm.deadline" and len(chain(wrapper)) == 2
    assert socket.socket.recv.__wrapped__ is socket.socket.__mro__[1].recv  # the C method of _socket.socket
    assert [f.__module__ for f in chain(execution._delay)] == ["datagen.lm.gate", "dspy.clients.execution"]
    assert [f.__module__ for f in chain(execution._cached)] == ["datagen.lm.calllog", "dspy.clients.execution"]
    for hooked, owner in ((execution.execute, "dspy.clients.execution"),
                          (execution.aexecute, "dspy.clients.execution"),
                          (dspy.Predict.__call__, "dspy.predict.predict"),
                          (dspy.Predict.acall, "dspy.predict.predict")):
        assert [f.__module__ for f in chain(hooked)] == ["datagen.lm.calllog", owner]  # the call log's, once
    assert inspect.iscoroutinefunction(execution.aexecute) and inspect.iscoroutinefunction(dspy.Predict.acall)
    assert execution.RouterConfig.keywords == {"max_connections": 4096}
    assert costs.model_info is capabilities.model_info  # one memo for both
    assert costs.model_info.__wrapped__ is model_metadata.model_info
    assert [f.__module__ for f in chain(AsyncLM15Engine.complete)] == ["datagen.lm.native",
                                                                       "dspy.clients.engines.lm15_engine"]


def test_the_native_engine_makes_a_provider_in_a_thread_once_and_finds_it_on_the_loop_after(monkeypatch):
    # DSPy finds every request's provider in a worker thread; once made, datagen finds it on the event loop
    # (datagen.lm.native): the hop only queued the request behind the loop's other work.
    hops = []
    to_thread = asyncio.to_thread

    async def counted(func, /, *args, **kwargs):
        hops.append(func.__name__)
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    with FakeOpenAIServer() as server:
        lm = build_role_model(ModelSettings(model="openai/fake", api_base=server.url), "task").lm.copy(cache=False)

        async def ask() -> tuple[list, int, list]:
            first = await lm.acall(messages=[{"role": "user", "content": "say 0"}])
            made = hops.count("_target")
            after = [await lm.acall(messages=[{"role": "user", "content": f"say {i}"}]) for i in (1, 2, 3)]
            return first, made, after

        first, made, after = asyncio.run(ask())  # one event loop: one engine, made by the first call
    assert made == 1 and hops.count("_target") == 1
    assert hops.count("prepare") == 4  # the other hops are DSPy's as they were: each call made them
    assert all(answer and answer[0] for answer in [first, *after])


def test_installing_twice_is_installing_once():
    install_hooks()
    once = hooked_now()
    filters = list(logging.getLogger("dspy.clients.lm").filters)
    install_hooks()
    assert hooked_now() == once
    assert logging.getLogger("dspy.clients.lm").filters == filters
    assert len(chain(execution._attempt)) == 5  # however many role models this process has made


def test_a_role_model_made_or_unpickled_in_a_fresh_process_installs_the_hooks():
    code = IMPORTS + """
import dspy
original = execution._attempt
from datagen.lm import RoleModel
print(execution._attempt is original)
RoleModel("task", dspy.LM("openai/x", api_key="k"), dspy.ChatAdapter(), None)
print(execution._attempt.__wrapped__.__wrapped__.__wrapped__.__wrapped__ is original)
"""
    assert run_python(code).split() == ["True", "True"]
    pickled = pickle.dumps(RoleModel("task", dspy.LM("openai/x", api_key="k"), dspy.ChatAdapter(), None))
    code = IMPORTS + f"""
import pickle
original = execution._attempt
model = pickle.loads({pickled!r})  # as a Ray actor receives it
print(model.lm.model, execution._attempt is not original, socket.socket.recv.__module__)
"""
    assert run_python(code).split() == ["openai/x", "True", "datagen.lm.deadline"]


def test_a_dspy_without_what_the_hooks_wrap_is_named_and_nothing_is_installed(monkeypatch):
    monkeypatch.delattr(execution, "_delay")
    monkeypatch.setattr(execution, "_cached", lambda lm, call: None)
    with pytest.raises(DatagenError, match=r"lacks dspy\.clients\.execution\._delay, dspy\.clients\.execution\."
                                           r"_cached .*dspy>=3\.4\.1,<3\.5"):
        check_dspy()
    code = IMPORTS + """
del execution._delay
original = execution._attempt
from datagen.errors import DatagenError
from datagen.lm import RoleModel, install_hooks
try:
    install_hooks()
except DatagenError as error:
    print(error)
print(execution._attempt is original, "recv" in socket.socket.__dict__)
"""
    named, kept = run_python(code).splitlines()
    assert "dspy.clients.execution._delay" in named
    assert kept == "True False"


def test_a_socket_read_of_another_thread_is_not_bounded_by_an_attempts_deadline():
    """One thread runs an attempt with a 0.3 s timeout, blocked on a read that no data ever reaches: the deadline
    ends it. Another thread's blocking read on another socket, started meanwhile, is still waiting once the
    attempt has ended, and gets its data when it comes. Ordered by the threads' own states, not by durations."""
    install_hooks()
    attempt_side, attempt_peer = socket.socketpair()
    other_side, other_peer = socket.socketpair()
    in_attempt, results = threading.Event(), {}

    def read_in_attempt(lm):
        in_attempt.set()
        return attempt_side.recv(1)

    def attempt():
        try:
            bound_attempt(read_in_attempt)(SimpleNamespace(model="fake/model", kwargs={"timeout": 0.3}))
        except LMTimeoutError as error:
            results["attempt"] = type(error)

    def other_read():
        results["other"] = other_side.recv(1)
        results["other_timeout"] = other_side.gettimeout()

    with attempt_side, attempt_peer, other_side, other_peer:
        bounded, other = threading.Thread(target=attempt), threading.Thread(target=other_read, daemon=True)
        bounded.start()
        assert in_attempt.wait(30)
        other.start()
        bounded.join(60)  # nothing is ever sent to the attempt's socket: only its deadline ends it
        assert not bounded.is_alive() and results.get("attempt") is LMTimeoutError
        assert other.is_alive() and "other" not in results  # the other read outlived the deadline, still waiting
        other_peer.sendall(b"x")
        other.join(60)
    assert results["other"] == b"x" and results["other_timeout"] is None  # the other thread's is not touched
