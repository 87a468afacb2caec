"""judge-check --pairs and --authors: a pipeline's metrics checked on parallel text and on several authors, with
the arithmetic held to known answers by fake judges, and the offline metrics on pairs written for the tests."""

import json
import random
from pathlib import Path

import pytest

from datagen.errors import DatagenError
from datagen.metrics import MetricContext
from datagen.metrics.checks.pairs import (PERTURBATIONS, PLACEHOLDERS, TEMPLATE, PipelineMetrics, check_authors,
                                          check_pairs, perturbations, read_authors, read_pairs)
from datagen.metrics.coverage import sentences
from datagen.workspace import Config, MetricSettings

from .conftest import ROOT, run_cli
from .fakes import MALFORMED, FakeEngine, FakeOpenAIServer, FromInputs, Unparseable
from .test_metrics import judge_model

PAIRS = ROOT / "data" / "style_clone" / "pairs.jsonl"


def test_offline_composite_prefers_the_true_rewrite_to_every_degenerate_one(workspace):
    result = run_cli("judge-check", "style_clone", "--pairs", str(PAIRS), "--offline", "--json", "v.json",
                     cwd=workspace, timeout=600)
    assert result.returncode == 0, result.stderr
    figures = json.loads((workspace / "v.json").read_text())["metrics"]
    assert {"generic_offline", "chrf", "coverage", "novelty", "composite (offline)"} <= set(figures)
    assert figures["generic_offline"]["plain_vs_styled"] == pytest.approx(
        {"accuracy": 1.0, "auc": 1.0, "n": 8, "low": 1.0, "high": 1.0})
    for name, checks in figures.items():  # every check, for every metric with an aspect and the composite
        pair_checks = {"plain_vs_styled", *PERTURBATIONS}  # genericness is also set against the styled text
        assert set(checks) == (pair_checks if name in ("generic_offline", "novelty") else set(PERTURBATIONS))
        for check, figure in checks.items():
            assert figure["low"] <= figure["accuracy"] <= figure["high"] and figure["n"] == 8
            assert check in result.stdout
    # The composite prefers the person's rewrite to a copy, another passage's rewrite, half of it, it padded with
    # other sentences, gibberish of its length, a placeholder and a stock text, in each of the 8 pairs.
    assert {check: f["accuracy"] for check, f in figures["composite (offline)"].items()} == \
        {check: 1.0 for check in PERTURBATIONS}
    assert figures["coverage"]["true_vs_truncated"]["accuracy"] == 1.0
    # chrF rewards copying: flagged, as the metric that loses to the copy.
    assert figures["chrf"]["true_vs_copy"]["accuracy"] == 0.0
    assert "flagged: chrf true_vs_copy: prefers an unchanged copy" in result.stdout
    assert "composite (offline) true_vs_copy" not in result.stdout.split("flagged:", 1)[-1]


def test_perturbations_are_built_from_any_pairs_and_the_same_for_a_seed():
    pairs = read_pairs(PAIRS)
    built = perturbations(pairs, seed=3)
    assert built == perturbations(pairs, seed=3) and built != perturbations(pairs, seed=4)
    for i, ((styled, plain), rewrites) in enumerate(zip(pairs, built)):
        assert list(rewrites) == list(PERTURBATIONS)
        assert rewrites["true_vs_copy"] == styled
        assert rewrites["true_vs_other"] in {p for j, (_, p) in enumerate(pairs) if j != i}
        assert plain.startswith(rewrites["true_vs_truncated"])
        assert len(rewrites["true_vs_truncated"].split()) == len(plain.split()) // 2
        padded = rewrites["true_vs_padded"]
        assert len(padded.split()) >= 1.5 * len(plain.split())
        assert all(sentence in padded for sentence in sentences(plain))  # the rewrite's own sentences, in order
        gibberish = rewrites["true_vs_gibberish"]
        assert len(gibberish) == len(plain) and gibberish != plain
        assert [c for c in gibberish if not c.isalpha()] == [c for c in plain if not c.isalpha()]
        assert sorted(c.lower() for c in gibberish if c.isalpha()) == sorted(c.lower() for c in plain if c.isalpha())
        assert rewrites["true_vs_placeholder"] == PLACEHOLDERS[i % len(PLACEHOLDERS)]
        assert rewrites["true_vs_template"] == TEMPLATE


def fake_judges(styled: set[str], own: set[str] = frozenset()) -> FakeEngine:
    """Genericness and boundaries: 1 for a styled passage, 5 otherwise; content: 3 whatever it reads; style
    fidelity: 5 for a passage in `own`, 1 otherwise; pairwise style: always "A" (position bias, nothing else)."""
    def rating(values: dict[str, str]) -> str:
        if "rewrite" in values:
            return "3"
        if "candidate" in values:
            return "5" if values["candidate"] in own else "1"
        return "1" if values["passage"] in styled else "5"
    return FakeEngine(by_field={"rating": FromInputs(rating), "closer": lambda _: "A", "reasoning": lambda _: "r"})


def with_judge(context: MetricContext, engine: FakeEngine) -> PipelineMetrics:
    context.judge = judge_model(engine)
    return PipelineMetrics("style_clone", context, offline=False)


def test_judges_go_through_the_same_checks_with_known_answers(workspace):
    pairs = read_pairs(PAIRS)
    context = MetricContext(workspace, Config(), corpus=[styled for styled, _ in pairs])
    result = check_pairs(with_judge(context, fake_judges({styled for styled, _ in pairs})), pairs)
    genericness, content = result.figures["genericness"], result.figures["content"]
    assert (genericness["plain_vs_styled"].accuracy, genericness["plain_vs_styled"].auc) == (1.0, 1.0)
    assert genericness["true_vs_copy"].accuracy == 1.0
    # Every plain text rated 5: the true rewrite ties with another passage's and with half of itself.
    assert (genericness["true_vs_other"].accuracy, genericness["true_vs_other"].auc) == (0.5, 0.5)
    assert all((f.accuracy, f.auc, f.n) == (0.5, 0.5, 8) for f in content.values())  # a constant says nothing
    assert result.kinds["genericness"] == "judge" and result.kinds["composite"] == "composite"
    flags = "\n".join(result.flags)
    assert "genericness true_vs_other: prefers another passage's rewrite to the true one (accuracy 0.50" in flags
    assert "content true_vs_copy: prefers an unchanged copy" in flags
    assert "content true_vs_other: worse than the offline chrf (accuracy 0.50 against 1.00)" in flags \
        or "content true_vs_other: worse than the offline embedding (accuracy 0.50 against 1.00)" in flags
    assert "genericness plain_vs_styled" not in flags


def _author(rng: random.Random, words: list[str], joiner: str, end: str, n: int = 8) -> str:
    """n paragraphs of about 160 words in one synthetic 'author's' habits: a vocabulary, a clause joiner, an end."""
    paragraphs = []
    for _ in range(n):
        sentences = []
        while sum(len(s.split()) for s in sentences) < 160:
            clauses = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 6))) for _ in range(rng.randint(1, 3))]
            sentences.append(joiner.join(clauses).capitalize() + end)
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs) + "\n"


@pytest.fixture
def authors(tmp_path) -> list:
    rng = random.Random(0)
    common = "the sea ship lamp harbour storm keeper rock tide gull boat night wind".split()
    habits = {"archaic": (common + "thee thou hath whilst verily nigh ere upon".split(), "; ", "."),
              "terse": (common + "went saw got ran took made".split(), ". ", "!"),
              "wordy": (common + "notwithstanding furthermore considerably particularly".split(), ", which ", "...")}
    paths = []
    for name, (words, joiner, end) in habits.items():
        (path := tmp_path / f"{name}.txt").write_text(_author(rng, words, joiner, end))
        paths.append(path)
    return paths


def test_own_author_beats_other_authors_offline_and_a_biased_pairwise_judge_is_flagged(workspace, authors):
    passages = read_authors(authors, limit=6)
    assert set(passages) == {"archaic", "terse", "wordy"} and all(len(p) == 6 for p in passages.values())
    own = {p for texts in passages.values() for p in texts}  # every passage is its own author's: fidelity says 5
    result = check_authors("style_clone", passages, workspace=workspace, config=Config(),
                           build=lambda context: with_judge(context, fake_judges(set(), own)))
    offline, fidelity = result.figures["style_offline"], result.figures["style_fidelity"]
    assert offline["own_vs_other_author"].accuracy >= 0.9 and offline["own_vs_other_author"].n == 6 * 6
    # Own passages rated 5 and the other authors' too (each is in `own`): ties, flagged as no better than chance.
    assert fidelity["own_vs_other_author"].accuracy == 0.5
    pairwise = result.figures["style_pairwise"]["own_vs_other_author"]
    assert (pairwise.accuracy, pairwise.auc) == (0.5, None)  # "A" in both orders: one win of two, every time
    assert any(f.startswith("style_pairwise own_vs_other_author: prefers another author's") for f in result.flags)
    assert any(f.startswith("style_fidelity own_vs_other_author: worse than the offline style_offline")
               for f in result.flags)


def test_authors_command_writes_the_figures(workspace, authors):
    result = run_cli("judge-check", "style_clone", *[a for path in authors for a in ("--authors", str(path))],
                     "--offline", "--limit", "6", "--json", "a.json", cwd=workspace, timeout=600)
    assert result.returncode == 0, result.stderr
    figure = json.loads((workspace / "a.json").read_text())["metrics"]["style_offline"]["own_vs_other_author"]
    assert figure["n"] == 36 and figure["accuracy"] >= 0.9 and figure["low"] <= figure["accuracy"]
    assert "own_vs_other_author" in result.stdout


@pytest.mark.parametrize("lines, message", [
    (['{"styled": "a", "plain": "b"}', "nope"], "pairs.jsonl:2: not valid JSON"),
    (['{"styled": "a", "plain": ""}'], "pairs.jsonl:1: needs a non-empty string 'plain'"),
    (['{"styled": "a", "plain": "b"}'] * 3, "needs at least 4 pairs, found 3"),
])
def test_a_bad_pairs_file_is_named_in_one_line(workspace, lines, message):
    (workspace / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    result = run_cli("judge-check", "style_clone", "--pairs", "pairs.jsonl", "--offline", cwd=workspace)
    assert result.returncode == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_pipeline_without_checkable_metrics_is_refused(workspace):
    with pytest.raises(DatagenError, match="factual_qa.*no genericness or content metric"):
        pairs = read_pairs(PAIRS)
        context = MetricContext(workspace, Config(), corpus=[s for s, _ in pairs])
        check_pairs(PipelineMetrics("factual_qa", context, offline=True), pairs)


def test_a_configured_background_teaches_the_style_metric_this_author_not_literary_prose(workspace, authors):
    passages = read_authors(authors, limit=6)
    archaic, terse = passages["archaic"], passages["terse"]
    (workspace / "others").mkdir()
    # Half of the terse author's text as background; a passage from the other half is scored.
    (workspace / "others/terse.txt").write_text("\n\n".join(authors[1].read_text().split("\n\n")[:4]))
    assert terse[-1] not in (workspace / "others/terse.txt").read_text()

    def style(config: Config) -> float:
        """The log-odds that the terse author's passage is the archaic author's."""
        metric = PipelineMetrics("style_clone", MetricContext(workspace, config, corpus=archaic), True)
        return metric.metrics["style_offline"].classifier.logit(terse[-1], terse[-1])

    configured = Config(metrics={"style_clone": MetricSettings(background=[Path("others")])})
    assert style(configured) < style(Config()) - 0.25  # an unseen passage of the other author reads less as this one
    with pytest.raises(DatagenError, match="nowhere"):
        style(Config(metrics={"style_clone": MetricSettings(background=[Path("nowhere")])}))


# --- a judge whose answer does not parse counts 0 against itself; the check completes and says so ------------------

def test_judge_check_without_offline_survives_unparseable_judge_answers_and_counts_them(workspace):
    pairs = read_pairs(PAIRS)
    broken = pairs[0][0]  # the content and boundaries judges read the styled passage first: unparseable for it
    with FakeOpenAIServer(by_field={"rating": lambda _: "4", "reasoning": lambda _: "r", "closer": lambda _: "A"},
                          faults=lambda source, attempt: MALFORMED if source == broken else None) as judge:
        (workspace / "datagen.toml").write_text(
            f'[models.judge]\nmodel = "openai/judge-model"\napi_base = "{judge.url}"\n')
        result = run_cli("judge-check", "style_clone", "--pairs", str(PAIRS), "--json", "v.json", cwd=workspace,
                         timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "AdapterParseError" not in result.stderr
    # Each pair is scored 8 times (the true rewrite and its 7 degenerate ones): pair 0's 8 content scores failed,
    # and the genericness judge's one reading of the styled passage itself (the copy).
    assert "failed: content: 8 of 64 scores failed (judge_content_parse 8)" in result.stdout
    assert "failed: genericness: 1 of 64 scores failed (judge_genericness_parse 1)" in result.stdout
    assert "failed: composite: 8 of 64 scores had a failed part, counted 0" in result.stdout
    written = json.loads((workspace / "v.json").read_text())
    assert written["failures"]["content"] == {"scored": 64, "failed": 8, "kinds": {"judge_content_parse": 8}}
    assert written["failures"]["chrf"] == {"scored": 64, "failed": 0, "kinds": {}}
    assert written["metrics"]["content"]["true_vs_copy"]["n"] == 8  # every pair still counted, the failed as 0


def test_a_pairwise_judge_that_never_parses_counts_against_itself(workspace, authors):
    passages = read_authors(authors, limit=6)

    def closer(_):
        raise Unparseable

    engine = FakeEngine(by_field={"rating": lambda _: "3", "closer": closer, "reasoning": lambda _: "r"})
    result = check_authors("style_clone", passages, workspace=workspace, config=Config(),
                           build=lambda context: with_judge(context, engine))
    pairwise = result.figures["style_pairwise"]["own_vs_other_author"]
    assert (pairwise.accuracy, pairwise.n) == (0.0, 36)  # a failed verdict: the other author's passage preferred
    assert result.failures.failed["style_pairwise"] == 36 and result.failures.failed["style_fidelity"] == 0
    assert "style_pairwise: 36 of 36 scores failed (judge_style_pairwise_parse 36)" in result.failure_lines()
    assert result.as_json()["failures"]["style_offline"] == {"scored": 72, "failed": 0, "kinds": {}}
    # Never heard, the judge is flagged once for that, not per check as if it had preferred the other author.
    flags = [flag for flag in result.flags if flag.startswith("style_pairwise")]
    assert len(flags) == 1 and "every score failed (judge_style_pairwise_parse 36)" in flags[0]
