"""The language-model layer: role models, DSPy adapters, the embedded model, the rate gate, the per-call deadline,
the spreading of calls over servers, the batch engine and the call log."""
