"""Validity of the model metrics (`datagen eval-model`): do they and their composites rank good answers above bad?

    python -m bench.answer_validity               # from the repository root; part 1 reads ../shared/corpora/
    python -m bench.answer_validity --pairs 150 --json /tmp/answers.json    # every held-out passage; JSON too
    python -m bench.answer_validity --only factual_qa    # the project's own QA set alone (no shared corpora)

A model metric scores a fine-tuned model's answer to a held-out sample's input, `metric(chunk, reference, answer)`
(datagen.metrics.answers). As bench/metric_validity.py does for the data metrics, each answer a model could give
is set against the one it should give, on ground truth nobody on the project wrote where there is some:

- **style_clone** (`--only style_clone`), on both parallel files of ../shared/corpora/parallel/ (Bible passages
  of ten verses and of two): the author is the King James Version. The stylometric classifier is fitted (as
  MetricContext and shared_classifier fit it in a run) on the training passages only, one in HELD_OUT_EVERY
  passages held out and never in its corpus. For each held-out passage the input is the World English Bible's
  version (`plain`) and the reference the King James one (`styled`); the answers scored are the reference itself
  (`oracle`), the input unchanged (`copy`), the Bible in Basic English's version (`plain_basic`: content right,
  style wrong), another held-out passage's King James text (`other_kjv`: style right, content wrong), the first
  half of the reference (`truncated`), the reference padded with another passage's King James sentences
  (`padded`), gibberish of its length, a placeholder, nothing, and the input with a few words swapped for archaic
  ones (`near_copy`: a cheap imitation of the style). Scored by the real MODEL_METRICS and MODEL_WEIGHTS of
  metrics/style_clone.py through AnswerScorer (the judge, unweighted, left out). Beside them: the composite
  without chrF (`composite -chrf`: the oracle's chrF is 1 by construction, which no model's answer reaches, so
  this is the ranking a styled answer in other words than the reference's would get), and, as `style` was at
  first, P(author's style) (`style P`, StyleProbability) with the composites it made (`composite P`, and `-chrf`).
- **factual_qa** (`--only factual_qa`), on the project's own hand-written set, data/factual_qa/answers.jsonl
  (28 questions on data/factual_qa/corpus/, each with its paragraph, a reference answer, a paraphrase of it and a
  fluent wrong answer that contradicts the passage): the offline part of the model composite (answer_f1,
  grounded and the novelty gate, MODEL_WEIGHTS renormalised without the `correct` judge, which needs an LLM) on
  the reference, the paraphrase, the wrong answer, the question copied back, another question's reference, nothing,
  gibberish and "I don't know.".

For each answer kind: the median of each metric and of the composite, and the share of items where the composite
(and each metric) ranks the good answer above it, a tie counting half, with a 95% percentile-bootstrap interval
(RESAMPLES resamples, seed 0) for the ordering checks. The figures go to docs/eval-model-validity.md; the
shared data is never copied into the project.
"""

import argparse
import json
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from datagen.errors import DatagenError  # datagen first: it keeps litellm from fetching its price list
from datagen.metrics.base import Score, clamp
from datagen.metrics.checks.pairs import read_pairs
from datagen.metrics.checks.stats import evenly_spaced, wins
from datagen.metrics.composite import Composite
from datagen.metrics.coverage import sentences
from datagen.metrics.scoring import COMPOSITE, AnswerScorer, MetricContext
from datagen.metrics.stylometry import CrossFittedClassifier, shared_classifier
from datagen.samples import Sample
from datagen.workspace.config import Config

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
PARALLEL = {"long": "bible_kjv_web_bbe_dev.jsonl", "short": "bible_kjv_web_bbe_short.jsonl"}
QA_SET = ROOT / "data" / "factual_qa" / "answers.jsonl"
# One passage in this many is held out (never in the classifier's corpus); the others are its training split.
HELD_OUT_EVERY = 3
RESAMPLES = 1000
PLACEHOLDER = "[rewritten passage]"
DONT_KNOW = "I don't know."
# Padding adds at least this share of the reference's words, in whole sentences of another passage.
PADDING = 0.5
# A near-copy's archaic words: the cheapest imitation of the King James style a model could learn.
ARCHAIC = {"you": "thee", "your": "thy", "yours": "thine", "yourself": "thyself", "has": "hath", "does": "doth",
           "to": "unto"}
_ARCHAIC_WORD = re.compile(r"\b(" + "|".join(ARCHAIC) + r")\b", re.IGNORECASE)
# The orderings a sound composite keeps: (better kind, worse kinds); for style_clone, last, two trade-offs with no
# agreed order (content right and style wrong, against style right and content wrong or a cheap imitation).
STYLE_CHECKS = [("oracle", ["plain_basic", "other_kjv"]),
                ("plain_basic", ["copy", "gibberish", "placeholder", "empty"]),
                ("other_kjv", ["copy", "gibberish", "placeholder", "empty"]),
                ("plain_basic", ["other_kjv", "near_copy"])]
QA_CHECKS = [("reference", ["wrong", "question", "other_reference", "empty", "gibberish", "dont_know"]),
             ("paraphrase", ["wrong", "question", "other_reference", "empty", "gibberish", "dont_know"])]
QA_PARTS = ["answer_f1", "grounded", "novelty"]


def archaic(text: str) -> str:
    """`text` with each word of ARCHAIC swapped for its archaic form, its first letter's case kept."""
    def swap(match: re.Match) -> str:
        word = ARCHAIC[match.group(0).lower()]
        return word.capitalize() if match.group(0)[0].isupper() else word
    return _ARCHAIC_WORD.sub(swap, text)


def gibberish(text: str, rng: random.Random) -> str:
    """`text` with its letters shuffled among the letter positions (each taking its position's case), the spaces,
    digits and punctuation left in place: its length, word lengths and punctuation, and no word."""
    letters = [c.lower() for c in text if c.isalpha()]
    rng.shuffle(letters)
    shuffled = iter(letters)
    return "".join((next(shuffled).upper() if c.isupper() else next(shuffled)) if c.isalpha() else c for c in text)


def padded(text: str, other: str, rng: random.Random) -> str:
    """`text` with sentences of `other` (in turn, from its first) inserted at random sentence boundaries until
    they add PADDING of its words: invented content in the same style."""
    own, extra = sentences(text), sentences(other)
    wanted, added, i = PADDING * len(text.split()), 0, 0
    while added < wanted:
        sentence = extra[i % len(extra)]
        own.insert(rng.randint(0, len(own)), sentence)
        added, i = added + len(sentence.split()), i + 1
    return " ".join(own)


def others(n: int, seed: int = 0) -> list[int]:
    """For each of `n` items, another item's index (never its own), drawn at random."""
    rng = random.Random(seed)
    return [(i + rng.randrange(1, n)) % n for i in range(n)]


def read_passages(path: Path) -> list[tuple[str, str, str]]:
    """(styled, plain, plain_basic) passages of a parallel file."""
    return [(styled, plain, basic) for (styled, plain), (_, basic)
            in zip(read_pairs(path, "styled", "plain"), read_pairs(path, "styled", "plain_basic"))]


def style_answers(passages: list[tuple[str, str, str]], seed: int = 0) -> list[dict[str, str]]:
    """For each held-out (styled, plain, plain_basic) passage, the answers scored, by kind (see the module's doc);
    another passage's text is always another held-out passage's."""
    rng, other, padding = random.Random(seed), others(len(passages), seed), others(len(passages), seed + 1)
    answers = []
    for i, (styled, plain, basic) in enumerate(passages):
        words = styled.split()
        answers.append({"oracle": styled, "copy": plain, "plain_basic": basic, "other_kjv": passages[other[i]][0],
                        "truncated": " ".join(words[: max(1, len(words) // 2)]),
                        "padded": padded(styled, passages[padding[i]][0], rng),
                        "gibberish": gibberish(styled, rng), "placeholder": PLACEHOLDER, "empty": "",
                        "near_copy": archaic(plain)})
    return answers


def score_all(scorer: AnswerScorer, items: list[tuple[str, Sample, dict[str, str]]],
              extra: Callable[[str, Sample, str, dict], dict[str, float]] | None = None) -> dict[str, dict[str, list]]:
    """{kind: {metric: [value per item]}} of every answer of each (chunk, reference sample, {kind: answer}), and
    the values `extra(chunk, reference, answer, scores)` adds from the scorer's scores."""
    values: dict[str, dict[str, list]] = {}
    for chunk, reference, answers in items:
        for kind, answer in answers.items():
            scores = scorer.score(chunk, reference, answer)
            found = {name: score.value for name, score in scores.items()}
            found.update(extra(chunk, reference, answer, scores) if extra else {})
            for name, value in found.items():
                values.setdefault(kind, {}).setdefault(name, []).append(value)
    return values


class StyleProbability:
    """What `style` was at first: P(author's style) of the answer, from the same classifier. It is near 1 for any
    text with the Bible's names and subjects (the World English Bible's version scored 0.9 and more), which is why
    `style` became the share of a typical passage's log-odds (datagen.metrics.answers.AnswerStyle)."""

    name, kind = "style", "offline"

    def __init__(self, classifier: CrossFittedClassifier):
        self.classifier = classifier

    def __call__(self, chunk: str, reference: Sample, answer: str) -> Score:
        return Score(clamp(self.classifier.probability(answer, chunk)))


def style_variants(scorer: AnswerScorer) -> Callable[[str, Sample, str, dict], dict[str, float]]:
    """What the style_clone part reports beside the pipeline's composite: the composite without chrF (what an
    answer that is not the reference word for word could reach at best: the oracle's chrF is 1 by construction),
    and, before, StyleProbability and the composite with it as its `style`, with and without chrF."""
    before = StyleProbability(shared_classifier(scorer.context, "style_clone"))
    without_chrf = {name: weight for name, weight in scorer.weights.items() if name != "chrf"}
    composites = {"composite -chrf": (Composite(scorer.metrics, without_chrf), False),
                  "composite P": (Composite(scorer.metrics, scorer.weights), True),
                  "composite P -chrf": (Composite(scorer.metrics, without_chrf), True)}

    def extra(chunk: str, reference: Sample, answer: str, scores: dict) -> dict[str, float]:
        swapped = {**scores, "style": before(chunk, reference, answer)}
        return {"style P": swapped["style"].value,
                **{name: composite.combine(swapped if probability else scores)
                   for name, (composite, probability) in composites.items()}}
    return extra


def share(better: list[float], worse: list[float]) -> dict[str, float]:
    """How often `better` scores above `worse` (a tie counting half), with its 95% percentile-bootstrap interval
    over the items (RESAMPLES resamples, seed 0) and the share of ties."""
    won = wins(better, worse)
    rng = np.random.default_rng(0)
    draws = won[rng.integers(0, len(won), (RESAMPLES, len(won)))].mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"share": float(won.mean()), "low": float(low), "high": float(high),
            "ties": float(np.mean(np.asarray(better) == np.asarray(worse)))}


def summarise(scores: dict[str, dict[str, list]], good: list[str], checks: list[tuple[str, list[str]]]) -> dict:
    """Per kind, the median of each metric and the share of items where each of `good` beats it, by metric; and
    the composite's ordering `checks` with their intervals."""
    kinds = {}
    for kind, by_metric in scores.items():
        kinds[kind] = {"median": {name: float(np.median(values)) for name, values in by_metric.items()},
                       "wins": {g: {name: share(scores[g][name], values)["share"] for name, values in by_metric.items()}
                                for g in good}}
    composites = [name for name in scores[good[0]] if name.startswith(COMPOSITE)]
    ordering = {f"{better} > {worse}": {name: share(scores[better][name], scores[worse][name]) for name in composites}
                for better, worse_kinds in checks for worse in worse_kinds}
    return {"n": len(next(iter(scores.values()))[COMPOSITE]), "kinds": kinds, "checks": ordering}


def style_clone(path: Path, limit: int, config: Config) -> dict:
    """The style_clone part on one parallel file: the classifier fitted on the training passages, the held-out
    ones' answers scored (at most `limit` of them, evenly spaced)."""
    passages = read_passages(path)
    held_out = passages[HELD_OUT_EVERY - 1::HELD_OUT_EVERY]
    training = [p for i, p in enumerate(passages) if (i + 1) % HELD_OUT_EVERY]
    held_out = evenly_spaced(held_out, limit)
    if len(held_out) < 4:
        raise DatagenError(f"{path}: needs at least 4 held-out passages, got {len(held_out)}")
    started = time.perf_counter()
    scorer = AnswerScorer("style_clone", MetricContext(ROOT, config, corpus=[p[0] for p in training]), [COMPOSITE])
    items = [(styled, Sample(input=plain, output=styled), answers)
             for (styled, plain, _), answers in zip(held_out, style_answers(held_out))]
    figures = summarise(score_all(scorer, items, style_variants(scorer)), ["oracle"], STYLE_CHECKS)
    figures.update(training=len(training), weights=scorer.weights, seconds=time.perf_counter() - started)
    return figures


def read_qa(path: Path) -> list[dict[str, str]]:
    """The QA validity set: one object a line with a non-empty chunk, question, reference, paraphrase and wrong."""
    fields = ("chunk", "question", "reference", "paraphrase", "wrong")
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for number, item in enumerate(items, 1):
        if not all(isinstance(item.get(name), str) and item[name].strip() for name in fields):
            raise DatagenError(f"{path}:{number}: needs a non-empty string for each of {', '.join(fields)}")
    return items


def factual_qa(config: Config) -> dict:
    """The factual_qa part: the offline model metrics and their composite (the `correct` judge left out, the other
    weights renormalised) on the answers to each question of QA_SET."""
    qa = read_qa(QA_SET)
    started = time.perf_counter()
    scorer = AnswerScorer("factual_qa", MetricContext(ROOT, config, corpus=[item["chunk"] for item in qa]),
                          [*QA_PARTS, COMPOSITE], parts=QA_PARTS)
    rng, other = random.Random(0), others(len(qa))
    items = [(item["chunk"], Sample(input=item["question"], output=item["reference"]),
              {"reference": item["reference"], "paraphrase": item["paraphrase"], "wrong": item["wrong"],
               "question": item["question"], "other_reference": qa[other[i]]["reference"], "empty": "",
               "gibberish": gibberish(item["reference"], rng), "dont_know": DONT_KNOW})
             for i, item in enumerate(qa)]
    figures = summarise(score_all(scorer, items), ["reference", "paraphrase"], QA_CHECKS)
    figures.update(weights=scorer.weights, seconds=time.perf_counter() - started)
    return figures


def markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|---|" + "---|" * (len(header) - 1),
            *("| " + " | ".join(row) + " |" for row in rows)]


def tables(title: str, figures: dict, good: list[str]) -> str:
    """Markdown: the medians and the composite's wins by kind, then each metric's wins, then the ordering checks."""
    kinds = figures["kinds"]
    metrics = list(next(iter(kinds.values()))["median"])
    names = [f"`{m}`" for m in metrics]
    lines = [f"**{title}** (n {figures['n']})", "", *markdown(
        ["answer", *names, *(f"{g} wins" for g in good)],
        [[f"`{kind}`", *(f"{f['median'][m]:.3f}" for m in metrics),
          *("-" if kind == g else f"{f['wins'][g][COMPOSITE]:.1%}" for g in good)] for kind, f in kinds.items()])]
    for g in good:
        lines += ["", f"Share of items where `{g}` scores above each answer, by metric (ties half):", "", *markdown(
            ["answer", *names], [[f"`{kind}`", *(f"{f['wins'][g][m]:.1%}" for m in metrics)]
                                 for kind, f in kinds.items() if kind != g])]
    composites = list(next(iter(figures["checks"].values())))
    rows = [[check, *(f"{c['share']:.1%}" + (f" ({c['low']:.1%}-{c['high']:.1%})" if name == COMPOSITE else "")
                      + (f" [{c['ties']:.0%} tied]" if c["ties"] else "") for name, c in by_composite.items())]
            for check, by_composite in figures["checks"].items()]
    lines += ["", "Each ordering: the share of items where the composite ranks the first answer above the second",
              "(ties half, and in brackets where any), with its 95% interval for the pipeline's composite:", "",
              *markdown(["ordering", *(f"`{name}`" for name in composites)], rows)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40, help="held-out passages to score from each parallel file "
                                                              "(at most 73 long, 133 short)")
    parser.add_argument("--only", choices=("style_clone", "factual_qa"), help="run one part only")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the figures to PATH as JSON")
    parser.add_argument("--corpora", type=Path, default=CORPORA, help="the shared corpora (default: %(default)s)")
    args = parser.parse_args()
    config, result = Config(), {}
    # One BLAS thread: on 2 loaded cores the embedding took 5.9 s a call with numpy's two threads, 1.1 s with one.
    threadpool_limits(limits=1, user_api="blas")
    if args.only in (None, "style_clone"):
        paths = {size: args.corpora / "parallel" / name for size, name in PARALLEL.items()}
        if not all(path.is_file() for path in paths.values()):
            raise SystemExit(f"{args.corpora}: not found (the style_clone part reads the shared corpora beside the "
                             "repository; --only factual_qa runs without them)")
        for size, path in paths.items():
            figures = result.setdefault("style_clone", {})[size] = style_clone(path, args.pairs, config)
            title = f"style_clone, {size} passages ({figures['training']} training, {figures['seconds']:.0f} s)"
            print(f"\n{tables(title, figures, ['oracle'])}\n", flush=True)
    if args.only in (None, "factual_qa"):
        figures = result["factual_qa"] = factual_qa(config)
        title = f"factual_qa, offline part ({figures['seconds']:.0f} s)"
        print(f"\n{tables(title, figures, ['reference', 'paraphrase'])}\n")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
