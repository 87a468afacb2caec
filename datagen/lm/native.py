"""DSPy's native engine (lm15) on an event loop: a request's provider looked up on the loop once it is made.

DSPy 3.4's `AsyncLM15Engine.complete` finds each request's provider in a worker thread
(`asyncio.to_thread(self._target, request)`), because making a provider may load or refresh credentials, which
blocks. A made provider stays on the engine, and finding it again is a dict lookup: the hop then only puts the call
at the back of the event loop's queue, behind every other chunk's step, with the request ready to go. With chunks
waiting at the rate gate (datagen.runs.runner.LOOKAHEAD), that hop came between a slot freed and the next request
written. Measured with this lookup patched into a checkout with the lookahead (`WARM=1 python -m bench.phase_cpu 64
20`, alternated, three each): 250.2, 255.7, 246.3 samples/s without it, 266.9, 267.0, 251.0 with it at 64 x 200 ms
(issue 29's seventh pass; bench/README.md gives both changes against neither).
"""


def lookup_on_loop(complete):
    """`AsyncLM15Engine.complete` with the request's provider looked up on the event loop when the engine has made it
    already; the first request of each provider goes DSPy's way, its provider made in a worker thread.

    Args:
        complete: DSPy's `dspy.clients.engines.lm15_engine.AsyncLM15Engine.complete(self, request)`.

    Returns:
        The wrapper, with `complete`'s signature.
    """
    async def complete_on_loop(self, request):
        try:
            made = self.resolve(request.model).provider in self._providers
        except Exception:  # a request the engine refuses: DSPy's own path raises it as DSPy does
            made = False
        if not made:
            return await complete(self, request)
        provider, routed = self._target(request)
        return await provider.complete(routed)
    return complete_on_loop
