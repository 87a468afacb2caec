"""An asyncio event loop in a thread of its own, on which a run's chunks with `aforward` run as tasks
(`EventLoopThread`): DSPy's async LMs do their I/O on it, without a thread a chunk in flight."""

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable


class EventLoopThread:
    """An asyncio event loop in a thread of its own, for programs with `aforward`: each chunk's coroutine runs on it
    as a task (`submit`). DSPy's async LMs do their I/O on it, without a thread a call."""

    def __init__(self):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="datagen-loop", daemon=True)
        self._thread.start()
        self._chunks: set[asyncio.Task] = set()  # the chunks' tasks (the loop's only), not the libraries'

    def submit(self, coroutine, context: contextvars.Context) -> concurrent.futures.Future:
        """Start `coroutine` as a task of the loop, in `context`; its result (or exception) to come. A task the
        loop cancels (`close(wait=False)`) cancels the future."""
        done = concurrent.futures.Future()

        def start():
            task = self._loop.create_task(coroutine, context=context)
            self._chunks.add(task)
            task.add_done_callback(self._chunks.discard)
            task.add_done_callback(lambda t: done.cancel() if t.cancelled() else (
                done.set_exception(t.exception()) if t.exception() else done.set_result(t.result())))
        self._loop.call_soon_threadsafe(start)
        return done

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Call `callback()` on the loop's thread, soon; from any thread."""
        self._loop.call_soon_threadsafe(callback)

    def close(self, wait: bool) -> None:
        """Stop the loop: with `wait` once the chunks' tasks are done (their workers have their results), else at
        once, cancelling them. Tasks a library left running on the loop (litellm's logging worker never ends) are
        cancelled either way: waiting for them held a run on litellm's route open for ever."""
        async def stop():
            if wait:
                await asyncio.gather(*self._chunks, return_exceptions=True)
            others = [t for t in asyncio.all_tasks(self._loop) if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            self._loop.stop()
        asyncio.run_coroutine_threadsafe(stop(), self._loop)
        if wait:
            self._thread.join()
            self._loop.close()
