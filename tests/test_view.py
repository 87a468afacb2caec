"""datagen view over HTTP (Starlette's test client, the app in process): the sample list's filters and order, the
review form and what it stores, the safety rules (token, Host, escaping, no secrets), evaluations and compare,
exports and older stores with reviews, and a run's model evaluation (`datagen eval-model`). The browser tests are
in test_view_browser.py."""

import html
import json
import re
import signal
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from urllib.request import urlopen

import pytest
from starlette.testclient import TestClient

from datagen.dataset import write_export
from datagen.dataset.review import NOT_REJECTED, REVIEWED
from datagen.metrics import Score
from datagen.model_eval import EvaluationSettings, evaluate_models, held_out_samples, parse_candidates
from datagen.runs.generate import RunSettings, generate
from datagen.store import Review, RunStore
from datagen.view import Viewed, check_host, create_app, data
from datagen.workspace import Config, SplitSettings

from .browser import copy_workspace
from .conftest import ROOT, every_record, run_cli, start_cli
from .fakes import FakeEngine, FakeOpenAIServer, plain, status
from .test_generate import fake_model, read_jsonl

CRITERIA = {"content": "keeps every fact", "genericness": "plain prose"}
TOKEN = "t" * 40
HOSTS = ["testserver", "127.0.0.1"]
SCRIPT = "<script>alert(1)</script>"


def scripted(text):
    """The fake rephrase, with a script tag in the one about the bell (escaping must show it as text)."""
    return plain(text) + (f" {SCRIPT}" if "Bell" in text else "")


@pytest.fixture
def run(workspace, tmp_path):
    out = tmp_path / "run"
    generate("style_clone", [workspace / "data/samples"], out, workspace=workspace, config=Config(),
             model=fake_model(FakeEngine(respond=scripted)), settings=RunSettings(max_tokens=200),
             min_scores={"chrf": 0.0})
    return out


def client_for(*targets, secrets_shown=()) -> TestClient:
    viewed = [Viewed(source, CRITERIA) for source in data.open_sources(list(targets))]
    return TestClient(create_app(viewed, hosts=HOSTS, secrets_shown=list(secrets_shown), token=TOKEN))


def stored(run):
    """(chunk id, index, input, output, chrf) of every sample, in corpus order."""
    with RunStore(run) as store:
        return [(chunk.id, i, s.input, s.output, store.sample_scores(chunk.id)[i]["chrf"])
                for chunk, samples in store.done() for i, s in enumerate(samples)]


def sample_links(html: str) -> list[tuple[str, int]]:
    return [(chunk, int(index)) for chunk, index in re.findall(r'<tr data-href="/r/0/s/(\w+)/(\d+)', html)]


def review(client, chunk, index, query="", **form):
    return client.post(f"/r/0/s/{chunk}/{index}/review?{query}", data={"token": TOKEN, **form},
                       follow_redirects=False)


def test_the_list_orders_by_a_metric_filters_and_pages(run, monkeypatch):
    samples = stored(run)
    client = client_for(run)
    worst = client.get("/r/0/samples?metric=chrf&order=worst")
    assert worst.status_code == 200
    expected = sorted(samples, key=lambda s: (s[4], samples.index(s)))
    assert sample_links(worst.text) == [(s[0], s[1]) for s in expected]
    best = sample_links(client.get("/r/0/samples?metric=chrf&order=best").text)
    assert best[0] == (expected[-1][0], expected[-1][1])
    # Search: the text of one sample's output, and nothing for a string no sample has.
    word = "Penberthy"
    hits = [(s[0], s[1]) for s in samples if word.lower() in (s[2] + s[3]).lower()]
    assert hits and sample_links(client.get(f"/r/0/samples?q={word}").text) == hits
    assert "no sample matches" in client.get("/r/0/samples?q=zzqqxx").text
    # Below a bar: exactly the samples under it.
    bar = expected[3][4]
    below = sample_links(client.get(f"/r/0/samples?below=chrf={bar!r}").text)
    assert below == [(s[0], s[1]) for s in samples if s[4] < bar]
    # Paging: two samples a page, every sample once over the pages.
    monkeypatch.setattr(data, "PAGE", 2)
    seen = []
    for page in range(1, len(samples) // 2 + 2):
        seen += sample_links(client.get(f"/r/0/samples?page={page}").text)
    assert seen == [(s[0], s[1]) for s in samples]


def test_a_review_is_stored_and_the_reviewer_moves_on_through_the_filtered_list(run):
    samples = stored(run)
    client = client_for(run)
    first, second = samples[0], samples[1]
    answer = review(client, first[0], first[1], "review=unreviewed", verdict="good", next="1",
                    **{"rating.content": "4", "comment": "fine"})
    assert answer.status_code == 303
    moved = urlparse(answer.headers["location"])
    assert moved.path == f"/r/0/s/{second[0]}/{second[1]}"  # the next unreviewed sample
    assert parse_qs(moved.query)["review"] == ["unreviewed"]
    with RunStore(run) as store:
        saved = store.review(first[0], first[1])
    assert (saved.verdict, saved.ratings, saved.comment, saved.corrected) == ("good", {"content": 4}, "fine", False)
    # The unreviewed list no longer holds it; the reviewed one does.
    assert (first[0], first[1]) not in sample_links(client.get("/r/0/samples?review=unreviewed").text)
    assert sample_links(client.get("/r/0/samples?review=good").text) == [(first[0], first[1])]
    # The page shows what was stored.
    page = client.get(f"/r/0/s/{first[0]}/{first[1]}")
    assert 'id="verdict">good<' in page.text and ">fine</textarea>" in page.text
    assert '<option value="4" selected>' in page.text


def test_a_correction_is_kept_beside_the_generated_sample_and_exported(run, tmp_path):
    samples = stored(run)
    client = client_for(run)
    (chunk, index, generated_input, generated_output, _), bad = samples[2], samples[3]
    # Saving the form unedited is no correction.
    review(client, chunk, index, verdict="", input=generated_input, output=generated_output.replace("\n", "\r\n"))
    with RunStore(run) as store:
        assert store.review(chunk, index) is None
    review(client, chunk, index, verdict="", input=generated_input, output="A corrected passage.")
    review(client, bad[0], bad[1], verdict="bad")
    page = client.get(f"/r/0/s/{chunk}/{index}")
    assert "corrected</span>" in page.text and 'id="generated-output">' in page.text
    with RunStore(run) as store:
        saved = store.review(chunk, index)
        assert (saved.input, saved.output) == (None, "A corrected passage.")
        assert store.result(chunk)["samples"][index].output == generated_output  # the generated text stays
    # Every export writes the correction; --exclude-rejected leaves the bad one out; --reviewed-only keeps the
    # corrected one alone (a correction counts as approved).
    everything = every_record(write_export(run, "jsonl", tmp_path / "all.jsonl").path)
    assert len(everything) == len(samples)
    assert [r["output"] for r in everything if r["chunk_id"] == chunk][index] == "A corrected passage."
    kept = every_record(write_export(run, "jsonl", tmp_path / "kept.jsonl", reviewed=NOT_REJECTED).path)
    assert len(kept) == len(samples) - 1
    assert (bad[2], bad[3]) not in {(r["input"], r["output"]) for r in kept}
    approved = every_record(write_export(run, "jsonl", tmp_path / "approved.jsonl", reviewed=REVIEWED).path)
    assert [(r["input"], r["output"]) for r in approved] == [(generated_input, "A corrected passage.")]
    # An approved sample passes a gate that its generated text's score would fail.
    gated = every_record(write_export(run, "jsonl", tmp_path / "gated.jsonl", min_scores={"chrf": 1.0}).path)
    assert [r["output"] for r in gated] == ["A corrected passage."]
    # Dropping the correction brings the generated text back.
    review(client, chunk, index, verdict="", drop_correction="1", input="x", output="y")
    with RunStore(run) as store:
        assert store.review(chunk, index) is None


def test_the_export_command_takes_the_review_filters(run, workspace):
    samples = stored(run)
    with RunStore(run) as store:
        store.set_review(Review(samples[0][0], samples[0][1], "bad"))
    result = run_cli("export", str(run), "-f", "sharegpt", "--exclude-rejected", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert len(every_record(run / "sharegpt.jsonl")) == len(samples) - 1
    card = (run / "README.md").read_text()
    assert "1 samples reviewed: 0 good, 1 bad" in card and "samples rated bad left out" in card
    both = run_cli("export", str(run), "-f", "jsonl", "--exclude-rejected", "--reviewed-only", cwd=workspace)
    assert both.returncode != 0 and "one of the two" in both.stderr


def test_changes_need_the_session_token_and_well_formed_values(run):
    chunk, index, *_ = stored(run)[0]
    client = client_for(run)
    forged = client.post(f"/r/0/s/{chunk}/{index}/review", data={"verdict": "good"})
    assert forged.status_code == 403
    wrong = client.post(f"/r/0/s/{chunk}/{index}/review", data={"verdict": "good", "token": "x" * 40})
    assert wrong.status_code == 403
    assert review(client, chunk, index, verdict="great").status_code == 400
    assert review(client, chunk, index, **{"rating.content": "7"}).status_code == 400
    assert review(client, chunk, index, **{"rating.style": "3"}).status_code == 400
    assert review(client, chunk, 99, verdict="good").status_code == 404
    with RunStore(run) as store:
        assert store.reviews() == {}


def test_pages_escape_sample_text_forbid_inline_script_and_check_the_host(run):
    client = client_for(run)
    bell = [s for s in stored(run) if SCRIPT in s[2]]
    assert bell, "the fake rephrase of the bell passage carries a script tag"
    page = client.get(f"/r/0/s/{bell[0][0]}/{bell[0][1]}")
    assert SCRIPT not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    listing = client.get("/r/0/samples?q=alert")
    assert sample_links(listing.text) == [(s[0], s[1]) for s in bell] and SCRIPT not in listing.text
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self': no inline script
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert client.get("/r/0", headers={"host": "attacker.example"}).status_code == 400


def test_no_api_key_or_private_api_base_is_shown(run, monkeypatch):
    key, base = "sk-test-0123456789abcdef", "http://10.1.2.3:8000/v1"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    chunk = stored(run)[0][0]
    db = sqlite3.connect(run / "run.db")
    db.execute("UPDATE calls SET error = ? WHERE chunk_id = ?", (f"401 from {base}: bad key {key}", chunk))
    db.commit()
    db.close()
    page = client_for(run, secrets_shown=[base]).get(f"/r/0/c/{chunk}")
    assert page.status_code == 200 and "[redacted]" in page.text
    assert key not in page.text and base not in page.text


def test_view_refuses_a_public_address_without_the_flag(run, workspace):
    check_host("127.0.0.1", False)
    check_host("::1", False)
    with pytest.raises(Exception, match="--allow-remote"):
        check_host("0.0.0.0", False)
    check_host("0.0.0.0", True)
    refused = run_cli("view", str(run), "--host", "0.0.0.0", "--port", "0", cwd=workspace)
    assert refused.returncode != 0 and "--allow-remote" in refused.stderr
    missing = run_cli("view", str(workspace / "nothing"), "--port", "0", cwd=workspace)
    assert missing.returncode != 0 and "not a run folder" in missing.stderr


def test_an_older_store_without_reviews_opens_and_gets_the_table(run):
    db = sqlite3.connect(run / "run.db")
    db.execute("DROP TABLE reviews")
    db.commit()
    db.close()
    client = client_for(run)
    assert client.get("/r/0/samples?review=unreviewed").status_code == 200
    chunk, index, *_ = stored(run)[0]
    assert review(client, chunk, index, verdict="good").status_code == 303


def test_an_evaluation_with_a_baseline_is_compared_sample_by_sample(tmp_path):
    def evaluation(values):
        return {"pipeline": "style_clone", "samples": [
            {"chunk_id": f"c{n}", "chunk": f"passage {n}", "input": f"in {n}", "output": f"out {n}",
             "scores": {"composite": {"value": value, "feedback": None}}} for n, value in enumerate(values)]}

    compiled = {**evaluation([0.9, 0.2, 0.6]), "baseline": evaluation([0.5, 0.7, 0.6])}
    path = tmp_path / "bootstrap.eval.json"
    path.write_text(json.dumps(compiled))
    client = client_for(path)
    front = client.get("/")
    assert "bootstrap (uncompiled)" in front.text and "bootstrap (compiled)" in front.text
    page = client.get("/compare?a=0&b=1&metric=composite")
    assert page.status_code == 200
    changes = re.findall(r'<td class="num (?:up|down|)">([^<]+)</td>', page.text)
    assert changes == ["-0.500", "+0.000", "+0.400"]  # largest drop first
    sample = client.get("/r/1/s/c1/0")
    assert sample.status_code == 200 and "read-only" in sample.text and 'id="review"' not in sample.text
    assert client.get("/r/1/quality").status_code == 404 and "/quality" not in client.get("/r/1").text
    assert client.post("/r/1/s/c1/0/review", data={"token": TOKEN, "verdict": "good"}).status_code == 400


@pytest.mark.parametrize("query, message", [
    ("page=99999999999999999999999", "page must be"), ("page=-1", "page must be"), ("page=abc", "page must be"),
    ("metric=nope&order=worst", "no sample is scored on 'nope' (scored: chrf)"), ("order=sideways", "order must be"),
    ("review=bogus", "review filter must be")])
def test_a_malformed_list_query_is_refused_with_a_message(run, query, message):
    answer = client_for(run).get(f"/r/0/samples?{query}")
    assert answer.status_code == 400 and message in answer.text.replace("&#39;", "'")


def test_a_key_in_a_sample_is_blanked_in_the_correction_boxes_too(run, monkeypatch):
    key = "sk-live-abcdef0123456789"
    monkeypatch.setenv("PROVIDER_API_KEY", key)
    chunk, index, generated_input, generated_output, _ = stored(run)[0]
    db = sqlite3.connect(run / "run.db")
    db.execute("UPDATE results SET samples = json_set(samples, '$[0][1]', ?) WHERE chunk_id = ?",
               (f"{generated_output} {key}", chunk))
    db.commit()
    db.close()
    client = client_for(run)
    page = client.get(f"/r/0/s/{chunk}/{index}")
    assert key not in page.text and "[redacted]" in page.text
    # The form sent back as shown (the key blanked) is no correction.
    review(client, chunk, index, verdict="good", input=generated_input, output=f"{generated_output} [redacted]")
    with RunStore(run) as store:
        assert not store.review(chunk, index).corrected


def test_the_pipelines_criteria_are_what_reviewers_rate(workspace):
    from datagen.scaffold import scaffold
    from datagen.metrics.scoring import review_criteria

    assert set(review_criteria("style_clone", workspace)) == {"content", "genericness", "style_fidelity",
                                                              "boundaries"}
    assert set(review_criteria("factual_qa", workspace)) == {"accuracy", "answerable", "non_trivial"}
    scaffold(workspace, "pirate", None)  # a new pipeline rates on what its judge measures
    assert set(review_criteria("pirate", workspace)) == {"follows_instructions"}


# --- a run's model evaluation --------------------------------------------------------------------------------

BROKEN = "This model's maximum context length is 8 tokens"


def model_evaluated_run(workspace: Path, run: Path) -> dict:
    """A style_clone run on the fake model with a held-out split, and `datagen eval-model`'s record of it (as
    written to RUN/model-eval/eval.json) over three stand-in models served over HTTP: `oracle` answers each
    sample's reference, `echo` its input with a script tag after it, `broken` refuses every call (a 400 whose
    message names its own server, which the view must blank out)."""
    generate("style_clone", [workspace / "data/samples"], run, workspace=workspace,
             config=Config(splits=SplitSettings(test_fraction=0.3)), model=fake_model(FakeEngine()),
             settings=RunSettings(max_tokens=200))
    with RunStore(run) as store:
        references = {held.sample.input: held.sample.output for held in held_out_samples(store)}

    def asked(messages: list[dict]) -> str:
        return [m for m in messages if m["role"] == "user"][-1]["content"]

    with (FakeOpenAIServer(chat=lambda messages: references.get(asked(messages), "?")) as oracle,
          FakeOpenAIServer(chat=lambda messages: f"{asked(messages)} {SCRIPT}") as echo,
          FakeOpenAIServer(faults=lambda source, attempt: status(400, message=f"{BROKEN} ({broken.url})")) as broken):
        servers = {"oracle": oracle, "echo": echo, "broken": broken}
        candidates = parse_candidates([f"{label}=openai/{label}" for label in servers],
                                      [f"{label}={server.url}" for label, server in servers.items()])
        return evaluate_models(run, candidates, EvaluationSettings(), workspace)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """(run folder, eval-model's record) of model_evaluated_run, for the module's tests."""
    base = tmp_path_factory.mktemp("model-eval")
    workspace = copy_workspace(ROOT, base / "ws")
    result = model_evaluated_run(workspace, base / "run")
    assert [m["label"] for m in result["models"]] == ["oracle", "echo", "broken"] and result["samples"]
    return base / "run", result


def section(page: str, pattern: str) -> str:
    """The HTML inside the first element `pattern` (a regex of its opening tag) opens, to the first closing tag of
    its name (so not an element that holds another of its own kind)."""
    tag = re.match(r"<(\w+)", pattern).group(1)
    found = re.search(rf"{pattern}(.*?)</{tag}>", page, re.S)
    assert found, f"no {pattern} in the page"
    return found.group(1)


def answer_of(held: str, label: str) -> str:
    """The HTML of `label`'s answer (beside the reference) in a held-out sample's section."""
    return held.split(f'<div class="pair answer" data-model="{label}">', 1)[1].split('<div class="pair answer"')[0]


def text_of(fragment: str) -> str:
    """What a browser shows of an HTML fragment: its tags dropped, its entities read."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def cells(row: str) -> list[str]:
    """The text of each <td> of a table row's HTML."""
    return [text_of(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_the_model_evaluation_page_shows_each_model_the_pairs_and_every_answer_against_the_reference(evaluated):
    run, result = evaluated
    client = client_for(run)
    assert 'href="/r/0/model-eval"' in client.get("/r/0").text
    page = client.get("/r/0/model-eval")
    assert page.status_code == 200
    # The models: each label, its composite mean with its interval, what it answered and how its calls failed.
    names = result["metrics"]["names"]
    assert names[0] == "composite"
    for model in result["models"]:
        row = section(page.text, rf'<tr data-model="{model["label"]}">')
        assert f"<th>{model['label']}<" in row
        failures = ", ".join(f"{kind} {n}" for kind, n in model["failures"].items()) or "0"
        assert cells(row) == [*(f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"
                                for s in (model["scores"][name] for name in names)),
                              str(model["answered"]), failures, "0", str(model["cut_off"])]
    oracle, echo, broken = result["models"]
    assert oracle["scores"]["composite"]["mean"] > echo["scores"]["composite"]["mean"]
    assert broken["answered"] == 0 and sum(broken["failures"].values()) == len(result["samples"])
    # The pairs: one row each, its wins, ties and losses, win rate and mean difference with their intervals.
    pairs = re.findall(r"<tr><td>(\w+)</td><td>(\w+)</td>(.*?)</tr>", section(page.text, '<table id="pairs">'), re.S)
    assert [(first, second) for first, second, _ in pairs] == [(p["first"], p["second"]) for p in result["pairs"]]
    for (*_, row), pair in zip(pairs, result["pairs"]):
        assert cells(row) == [
            str(pair["n"]), f"{pair['wins']} / {pair['ties']} / {pair['losses']}",
            f"{pair['win_rate']:.3f} [{pair['win_low']:.3f}, {pair['win_high']:.3f}]",
            f"{pair['difference']:+.3f} [{pair['difference_low']:+.3f}, {pair['difference_high']:+.3f}]"]
    # Every held-out sample: its input, and each answer beside the reference, with a word diff against it.
    for sample in result["samples"]:
        held = section(page.text, rf'<section class="held-out" id="sample-{sample["id"]}">')
        assert text_of(section(held, '<pre class="text input">')) == sample["input"]
        exact = answer_of(held, "oracle")
        assert text_of(section(exact, '<pre class="text answer-text">')) == sample["reference"]
        assert "<ins>" not in exact and "<del>" not in exact  # the same text: nothing marked
        echoed = answer_of(held, "echo")
        reference = section(echoed, '<pre class="text reference">')
        answer = section(echoed, '<pre class="text answer-text">')
        assert text_of(reference) == sample["reference"] and text_of(answer) == f"{sample['input']} {SCRIPT}"
        assert "<del>" in reference and "<ins>" in answer
        assert BROKEN in text_of(answer_of(held, "broken"))
        scores = sample["answers"]["echo"]["scores"]
        assert f"{scores['chrf']['value']:.3f}" in echoed and html.escape(scores["chrf"]["feedback"]) in echoed
    # The echo's script tag is text; the broken model's server is blanked out of its error.
    assert SCRIPT not in page.text and "&lt;script&gt;" in page.text
    assert broken["api_base"][0] not in page.text and "[redacted]" in page.text


def test_a_run_without_a_model_evaluation_has_no_link_and_a_broken_one_says_why(run):
    client = client_for(run)
    assert "model-eval" not in client.get("/r/0").text
    missing = client.get("/r/0/model-eval")
    assert missing.status_code == 404 and "this run has no model evaluation" in missing.text
    folder = run / "model-eval"
    folder.mkdir()
    for content, says in (("{not json", "not readable as a model evaluation"),
                          ('{"models": "none"}', "not a model evaluation as datagen eval-model writes it"),
                          ('{"models": [], "run": "r", "pipeline": "p", "created": "c", "system": null, "held_out": 1, '
                           '"metrics": {"names": ["composite"]}, "pairs": [], "samples": [{"id": "x"}]}',
                           "KeyError")):
        (folder / "eval.json").write_text(content)
        assert 'href="/r/0/model-eval"' in client.get("/r/0").text  # the run page is whole, with the link
        page = client.get("/r/0/model-eval")
        assert page.status_code == 200 and says in section(page.text, '<p id="problem">')
        assert "<table" not in page.text


@pytest.mark.parametrize("signum, label", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM"),
                                           (signal.SIGHUP, "SIGHUP")], ids=["ctrl-c", "sigterm", "sighup"])
def test_view_stops_on_each_stop_signal_as_on_ctrl_c(run, workspace, signum, label):
    viewer = start_cli("view", str(run), "--port", "0", cwd=workspace)
    try:
        url = re.search(r"http://\S+/", viewer.stdout.readline()).group(0)
        assert urlopen(url, timeout=30).status == 200
        viewer.send_signal(signum)
        _, stderr = viewer.communicate(timeout=60)
    finally:
        viewer.kill()
    assert viewer.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == f"error: interrupted ({label})"


# --- a run's dataset quality ---------------------------------------------------------------------------------

# A sentence of the corpus (section III), given to `datagen quality --protect` as an evaluation file's text.
PROTECTED = ("He slept the clock round, and woke hungry as a shark, and ate a quantity of salt pork and ship’s biscuit "
             "that would have shamed a press-gang")
QUALITY_KEY = "sk-quality-test-0123456789abcdef"


def screened_run(workspace: Path, run: Path) -> dict:
    """A style_clone run on the fake model whose corpus prints its opening twice (reprint.md: the first five
    paragraphs again, a word in two of them changed for another of the same length, so that its chunks begin where the
    original's do), measured by `datagen quality RUN --protect protected.txt` (PROTECTED). The rephrase of the
    opening passage carries a script tag and QUALITY_KEY, which the pages must show as text and blank out.
    Returns {"copies": {each reprint sample: the original sample at the same place}, "contaminated": the sample whose
    output holds PROTECTED, "protected": the file's path, "samples": {key: Sample}}."""
    story = (workspace / "data/samples/lighthouse_keeper.md").read_text(encoding="utf-8")
    opening = "\n\n".join(story.split("\n\n")[:5])
    assert "dear reader" in opening and "Ninety-two steps" in opening and PROTECTED in story
    (workspace / "data/samples/reprint.md").write_text(
        opening.replace("dear reader", "good reader").replace("Ninety-two steps", "Ninety-one steps"), encoding="utf-8")

    def respond(text: str) -> str:
        return plain(text) + (f" {SCRIPT} {QUALITY_KEY}" if "Confession" in text else "")

    generate("style_clone", [workspace / "data/samples"], run, workspace=workspace, config=Config(),
             model=fake_model(FakeEngine(respond=respond)), settings=RunSettings(max_tokens=200))
    protected = run.parent / "protected.txt"
    protected.write_text(PROTECTED + "\n", encoding="utf-8")
    measured = run_cli("quality", str(run), "--protect", str(protected), cwd=workspace)
    assert measured.returncode == 0, measured.stderr
    with RunStore(run) as store:
        done = [(chunk, (chunk.id, i), sample) for chunk, samples in store.done() for i, sample in enumerate(samples)]
    originals = {chunk.start: key for chunk, key, _ in done if chunk.source.endswith("lighthouse_keeper.md")}
    copies = {key: originals[chunk.start] for chunk, key, _ in done if chunk.source.endswith("reprint.md")}
    (contaminated,) = [key for _, key, sample in done if PROTECTED in sample.output]
    return {"copies": copies, "contaminated": contaminated, "protected": protected,
            "samples": {key: sample for _, key, sample in done}}


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    """(run folder, screened_run's record), for the module's tests."""
    base = tmp_path_factory.mktemp("screened")
    workspace = copy_workspace(ROOT, base / "ws")
    planted = screened_run(workspace, base / "run")
    assert len(planted["copies"]) == 2, "the reprint's two edited chunks are done (its others, the same, are dropped)"
    return base / "run", planted


def run_db_state(run: Path) -> tuple[bytes, bytes]:
    """The run store's database and write-ahead log as they are on disk (a write changes one of them; a reader's
    -shm index is no data)."""
    wal = run / "run.db-wal"
    return (run / "run.db").read_bytes(), wal.read_bytes() if wal.exists() else b""


def test_the_quality_page_shows_each_near_duplicate_beside_its_original_the_contamination_and_diversity(
        screened, monkeypatch):
    from datagen.dataset.quality.near_duplicates import char_shingles, jaccard
    from datagen.dataset.screening import DEFAULT_THRESHOLDS, recorded_quality

    run, planted = screened
    monkeypatch.setenv("PROVIDER_API_KEY", QUALITY_KEY)
    samples, before = planted["samples"], run_db_state(run)
    with RunStore(run) as store:
        quality = recorded_quality(store)
    client = client_for(run)
    assert 'href="/r/0/quality"' in client.get("/r/0").text
    page = client.get("/r/0/quality")
    assert page.status_code == 200 and 'id="not-measured"' not in page.text
    # Every reprinted passage is flagged, in both fields, as repeating the original at the same place; nothing else.
    rows = re.findall(r'<section class="duplicate" data-flagged="(\w+)#(\d+)" data-of="(\w+)#(\d+)" '
                      r'data-field="(\w+)">(.*?)</section>', page.text, re.S)
    shown = {((a, int(i)), (b, int(j)), name) for a, i, b, j, name, _ in rows}
    assert shown == {(copy, of, name) for copy, of in planted["copies"].items() for name in ("input", "output")}
    assert len(rows) == len(quality.groups(DEFAULT_THRESHOLDS))
    for a, i, b, j, name, body in rows:
        flagged, of = getattr(samples[a, int(i)], name), getattr(samples[b, int(j)], name)
        # Both texts, whole (the copy's changed words marked), both samples linked, and the exact similarity.
        assert text_of(section(body, '<pre class="text original">')) == of.replace(QUALITY_KEY, "[redacted]")
        assert text_of(section(body, '<pre class="text flagged">')) == flagged.replace(QUALITY_KEY, "[redacted]")
        if name == "output":
            assert "<ins>good</ins>" in body or "<ins>one</ins>" in body
        assert f'href="/r/0/s/{a}/{i}"' in body and f'href="/r/0/s/{b}/{j}"' in body
        similarity = round(jaccard(char_shingles(flagged), char_shingles(of)), 4)  # as recorded
        assert 0.6 <= similarity < 1 and f'<span class="similarity">{similarity:.2f}</span>' in body
    flagged_count = len(planted["copies"])
    assert text_of(section(page.text, '<p id="duplicate-count">')).startswith(
        f"{flagged_count} sample{'s' * (flagged_count != 1)} nearly repeat")
    # The contaminated sample: the protected file's line, every one of its 13-grams shared (100%).
    (row,) = re.findall(r'<tr data-sample="(\w+)#(\d+)">(.*?)</tr>', page.text, re.S)
    (key, name, source, shared, share), = quality.contamination
    assert ((row[0], int(row[1])), name, source) == (planted["contaminated"], "output", f"{planted['protected']}:1")
    assert cells(row[2])[:5] == [f"{key[0]}#{key[1]}", "output", source, str(shared), "100%"] and shared > 1
    # The diversity of each field beside its source chunks, and the ways it narrowed them.
    for name, comparison in quality.diversity.items():
        for texts, figures in (("samples", comparison.samples), ("source", comparison.source)):
            row = section(page.text, f'<tr data-texts="{texts}" data-field="{name}">')
            openings = ", ".join(f"{o.text} ({o.share:.0%})" for o in figures.openings)
            assert cells(row)[1:] == [str(len(samples)), *(f"{v:.3f}" for v in (
                figures.distinct_1, figures.distinct_2, figures.compression_ratio)), openings, "-"]
    narrowed = [text_of(line) for line in re.findall(r"<li>(.*?)</li>", section(page.text, '<ul id="narrowed">'))]
    assert narrowed == [f"{name}: {line}" for name, c in quality.diversity.items() for line in c.narrowed]
    assert narrowed  # the input: the fake rephrase repeats "plain"
    assert "distinct-2</dt>" in page.text and "compression ratio</dt>" in page.text
    # Texts are escaped, and the key blanked out; the view read the store and wrote nothing.
    assert SCRIPT not in page.text and html.escape(SCRIPT, quote=False) in page.text
    assert QUALITY_KEY not in page.text and "[redacted]" in page.text
    assert run_db_state(run) == before


def test_a_flagged_samples_page_says_why_exports_leave_it_out_and_links_to_what_it_repeats(screened):
    run, planted = screened
    client = client_for(run)
    copy, original = next(iter(planted["copies"].items()))
    page = client.get(f"/r/0/s/{copy[0]}/{copy[1]}")
    flag = section(page.text, '<p class="flag" id="flag">')
    assert text_of(flag).startswith(f"left out of exports: input nearly repeats {original[0]}#{original[1]} (lexical, ")
    assert f'<a href="/r/0/s/{original[0]}/{original[1]}" id="repeats">' in flag
    assert "--keep-near-duplicates" in flag
    contaminated = planted["contaminated"]
    flag = section(client.get(f"/r/0/s/{contaminated[0]}/{contaminated[1]}").text, '<p class="flag" id="flag">')
    assert text_of(flag).startswith(f"left out of exports: output shares ")
    assert f"13-grams with {planted['protected']}:1 (100% of it)" in text_of(flag) and "--keep-contaminated" in flag
    assert 'id="flag"' not in client.get(f"/r/0/s/{original[0]}/{original[1]}").text  # the original is kept


def test_a_run_not_measured_for_its_samples_says_how_to_measure_and_is_not_written(run, workspace):
    chunk = stored(run)[0][0]
    # generate measures the dataset it writes: a run made before datagen measured any has no such record or tables.
    db = sqlite3.connect(run / "run.db")
    db.executescript("DROP TABLE near_duplicates; DROP TABLE contamination; DELETE FROM meta WHERE key = 'quality';")
    db.close()
    client = client_for(run)
    before = run_db_state(run)
    page = client.get("/r/0/quality")
    assert page.status_code == 200
    said = text_of(section(page.text, '<p id="not-measured">'))
    assert "has not been measured yet" in said and f"datagen quality {run}" in said
    assert 'id="flag"' not in client.get(f"/r/0/s/{chunk}/0").text
    assert run_db_state(run) == before
    with RunStore(run) as store:
        assert "quality" not in store.meta()
    # Measured, then a chunk's samples gone (its result dropped): the record is of other samples, and said so.
    assert run_cli("quality", str(run), cwd=workspace).returncode == 0
    assert 'id="not-measured"' not in client.get("/r/0/quality").text
    db = sqlite3.connect(run / "run.db")
    db.execute("DELETE FROM results WHERE chunk_id = ?", (chunk,))
    db.commit()
    db.close()
    said = text_of(section(client.get("/r/0/quality").text, '<p id="not-measured">'))
    assert "measured on other samples" in said and f"datagen quality {run}" in said


def test_the_quality_lists_are_paged_and_show_a_correction_as_exported(screened, tmp_path, monkeypatch):
    import shutil

    from datagen.dataset.screening import measure

    run = shutil.copytree(screened[0], tmp_path / "run")
    planted = screened[1]
    client = client_for(run)
    monkeypatch.setattr(data, "PAGE", 1)
    listed, pattern = [], r'data-flagged="(\w+#\d+)" data-of="(\w+#\d+)" data-field="(\w+)"'
    for number in range(1, 2 * len(planted["copies"]) + 2):  # a row a page: each field of each copy, then none
        page = client.get(f"/r/0/quality?duplicates={number}&contaminated=1").text
        listed.append(re.findall(pattern, page))
    assert 'href="?duplicates=2&amp;contaminated=1#duplicates"' in client.get("/r/0/quality").text
    assert [len(rows) for rows in listed] == [1] * 2 * len(planted["copies"]) + [0]
    assert sorted(row for rows in listed for row in rows) == sorted((f"{a[0]}#{a[1]}", f"{b[0]}#{b[1]}", name)
                                                                    for a, b in planted["copies"].items()
                                                                    for name in ("input", "output"))
    for query in ("duplicates=0", "duplicates=abc", "contaminated=-1"):
        assert client.get(f"/r/0/quality?{query}").status_code == 400
    # A copy corrected by a reviewer (still a near-duplicate: a word more): the same open view says at once that the
    # record is of other samples, on the quality page and the copy's own, until measured again; then the corrected
    # output is shown (as every export writes it), tagged.
    monkeypatch.setattr(data, "PAGE", 50)
    copy = next(iter(planted["copies"]))
    corrected = planted["samples"][copy].output + " Indeed."
    assert review(client, *copy, verdict="", input=planted["samples"][copy].input, output=corrected).status_code == 303
    said = text_of(section(client.get("/r/0/quality").text, '<p id="not-measured">'))
    assert "measured on other samples" in said and "a reviewer corrected one" in said
    assert 'id="flag"' not in client.get(f"/r/0/s/{copy[0]}/{copy[1]}").text
    with RunStore(run) as store:
        measure(store)
    page = client.get("/r/0/quality").text
    row = section(page, f'<section class="duplicate" data-flagged="{copy[0]}#{copy[1]}" data-of="[^"]+" '
                        'data-field="output">')
    assert text_of(section(row, '<pre class="text flagged">')) == corrected and '<span class="tag"' in row
