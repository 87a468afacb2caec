"""A run's model evaluation as `datagen view` shows it: RUN/model-eval/eval.json, written by `datagen eval-model`
(datagen.model_eval.evaluate), read and checked, its texts blanked as every page blanks them, and each model's
answer set beside the held-out reference with a word diff (datagen.view.diff).

The file is read afresh for every page (a later eval-model rewrites it), and it is not trusted to hold what
eval-model writes: a file of another shape is one line of DatagenError, which the page shows instead.
"""

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from datagen.errors import DatagenError
from datagen.model_eval import FOLDER, RESULT_FILE
from datagen.view.data import PAGE, Source
from datagen.view.diff import word_diff

# A pair's counts and its figures (None when the two models share no sample), as datagen.model_eval.stats gives them.
_PAIR_COUNTS = ("n", "wins", "ties", "losses")
_PAIR_FIGURES = ("win_rate", "win_low", "win_high", "difference", "difference_low", "difference_high")


def evaluation_file(source: Source) -> Path | None:
    """Where a run folder's model evaluation is (RUN/model-eval/eval.json, which may not exist); None for an
    evaluation source, which has no run folder."""
    return source.path.parent / FOLDER / RESULT_FILE if source.writable else None


def evaluation_view(file: Path, shown: Callable[[object, Sequence[str]], str], page: int = 1) -> dict:
    """The model evaluation in `file`, as its page shows it.

    Args:
        file: a run's eval.json (evaluation_file).
        shown: how a page shows a text (datagen.view.app.Pages.shown): given the text and the servers of the
            models asked (their api_base), blanked out too.
        page: which page of held-out samples (from 1), datagen.view.data.PAGE a page.

    Returns:
        {run, pipeline, created, system (None: none), held_out, names (the metrics), models, pairs, samples (the
        page's), total (samples in all)}. A model: label, model, answered, failed, cut_off (answers cut off at
        max_tokens), failures and failed_scores
        ({kind or metric: count}), scores ({metric: {mean, low, high, n}}). A pair: first, second, metric, n, wins,
        ties, losses, win_rate, win_low, win_high, difference, difference_low, difference_high. A sample: id,
        chunk_id, source, input, history ([(user, assistant)]), reference, answers: [{label, text (None: the call
        failed), error, diff (the reference and the answer as word_diff marks them, None for a failed call),
        scores: [{metric, value, feedback, failed}] in the order of `names`}].

    Raises:
        DatagenError: (one line) the file cannot be read, is not JSON, or does not hold what eval-model writes.
    """
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatagenError(f"{file}: not readable as a model evaluation ({exc})") from None
    try:
        return _view(record, shown, page)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise DatagenError(f"{file}: not a model evaluation as datagen eval-model writes it "
                           f"({type(exc).__name__}: {exc})") from None


def _view(record: dict, shown: Callable[[object, Sequence[str]], str], page: int) -> dict:
    servers = [str(server) for model in record["models"] for server in model.get("api_base") or []]

    def show(text) -> str:
        return shown(text, servers)

    names = [str(name) for name in record["metrics"]["names"]]
    samples = record["samples"]
    start = (max(page, 1) - 1) * PAGE
    return {"run": show(record["run"]), "pipeline": str(record["pipeline"]), "created": str(record["created"]),
            "system": None if record["system"] is None else show(record["system"]),
            "held_out": int(record["held_out"]), "names": names,
            "models": [_model(model, names, show) for model in record["models"]],
            "pairs": [{"first": str(pair["first"]), "second": str(pair["second"]), "metric": str(pair["metric"]),
                       **{key: int(pair[key]) for key in _PAIR_COUNTS},
                       **{key: _number(pair[key]) for key in _PAIR_FIGURES}} for pair in record["pairs"]],
            "samples": [_sample(sample, names, show) for sample in samples[start:start + PAGE]],
            "total": len(samples)}


def _number(value) -> float | None:
    return None if value is None else float(value)


def _model(model: dict, names: list[str], show: Callable[[object], str]) -> dict:
    return {"label": str(model["label"]), "model": show(model["model"]), "answered": int(model["answered"]),
            "failed": int(model["failed"]), "cut_off": int(model["cut_off"]),
            "failures": {str(kind): int(n) for kind, n in model["failures"].items()},
            "failed_scores": {str(name): int(n) for name, n in model["failed_scores"].items()},
            "scores": {name: _summary(model["scores"][name]) for name in names}}


def _summary(summary: dict) -> dict:
    return {"mean": _number(summary["mean"]), "low": _number(summary["low"]), "high": _number(summary["high"]),
            "n": int(summary["n"])}


def _sample(sample: dict, names: list[str], show: Callable[[object], str]) -> dict:
    reference = show(sample["reference"])
    answers = []
    for label, answer in sample["answers"].items():
        text = None if answer["text"] is None else show(answer["text"])
        scores = answer["scores"]
        # The metrics in the order of the models table (composite first); any other after them.
        order = sorted(scores, key=lambda name: names.index(name) if name in names else len(names))
        answers.append({
            "label": str(label), "text": text, "error": None if text is not None else show(answer["error"]) or "failed",
            "diff": None if text is None else word_diff(reference, text),
            "scores": [{"metric": str(name), "value": _number(scores[name]["value"]),
                        "feedback": show(scores[name]["feedback"]), "failed": scores[name]["failed"] or None}
                       for name in order]})
    return {"id": str(sample["id"]), "chunk_id": str(sample["chunk_id"]), "source": show(sample["source"]),
            "input": show(sample["input"]), "history": [(show(user), show(assistant))
                                                        for user, assistant in sample["history"]],
            "reference": reference, "answers": answers}
