"""`datagen push` and `push_run` against a stand-in for the Hub over real HTTP (tests/hub_standin.py): the repository
made private unless asked, the splits as parquet read back, the card's metadata as huggingface_hub parses it, no
commit for a push that changes nothing, an interrupted push finished by pushing again with nothing sent twice, and
the token nowhere but in the Authorization header."""

import io
import json
import re
import signal

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard, constants

from datagen.dataset.export import hf_dataset, sample_id, split_samples
from datagen.dataset.hub import NO_TOKEN, push_run, write_parquet
from datagen.errors import DatagenError, InputError
from datagen.samples import Score
from datagen.store import RunStore

from .conftest import run_cli, start_cli
from .hub_standin import HubStandIn
from .test_export import make_run

TOKEN = "hf_pUsHtEsT" + "Q7x9Zk2m" * 4  # looks like a token, and is found if it leaks anywhere
REPO = "tester/lighthouse"
DATA = {"train": "data/train-00000-of-00001.parquet", "validation": "data/validation-00000-of-00001.parquet",
        "test": "data/test-00000-of-00001.parquet"}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The stand-in, with the environment a user would have: HF_ENDPOINT at it, HF_TOKEN set, HF_HOME a fresh
    folder (no real login read), and Xet off (huggingface_hub picks Xet whenever hf_xet is installed; the stand-in
    speaks LFS). In process, huggingface_hub's constants read at import are set too."""
    home = tmp_path / "hf_home"
    home.mkdir()
    with HubStandIn(tmp_path / "hub_store", TOKEN) as server:
        for name, value in {"HF_ENDPOINT": server.url, "HF_TOKEN": TOKEN, "HF_HOME": str(home),
                            "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("HF_TOKEN_PATH", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
        monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
        server.home = home
        yield server


@pytest.fixture
def run(workspace, tmp_path):
    out = tmp_path / "run"
    make_run(workspace, out)
    return out


def commits(hub, repo=REPO) -> int:
    return len(hub.repo(repo).commits)


def card(hub, repo=REPO) -> DatasetCard:
    return DatasetCard(hub.read(repo, "README.md").decode())


def rows(hub, path, repo=REPO) -> list[dict]:
    return pq.read_table(io.BytesIO(hub.read(repo, path))).to_pylist()


def assert_no_token(*places, texts=()):
    """The token is in no file under `places` and in none of `texts`."""
    for text in texts:
        assert TOKEN not in text
    for place in places:
        for path in place.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_push_makes_a_private_dataset_of_the_splits_the_card_and_the_provenance(hub, run, workspace, tmp_path):
    result = run_cli("push", str(run), REPO, "--val-fraction", "0.5", cwd=workspace)
    assert result.returncode == 0, result.stderr
    repo = hub.repo(REPO)
    assert repo.private and commits(hub) == 2  # the Hub's initial commit, then the push's one
    assert f"pushed to {hub.url}/datasets/{REPO} (private; train " in result.stdout
    assert set(repo.head.files) == {".gitattributes", "README.md", "datagen.json", *DATA.values()}
    assert hub.count("lfs-upload") == 3 and hub.count("commit") == 1 and hub.count("xet", None) == 0
    with RunStore(run) as store:
        splits = split_samples(store, val_fraction=0.5)
    assert splits["train"] and splits["validation"] and splits["test"]  # the run's held-out split, pushed apart
    for name, path in DATA.items():
        got = rows(hub, path)
        assert [r["id"] for r in got] == [sample_id(chunk.id, index) for chunk, index, _ in splits[name]]
        for row, (chunk, _, sample) in zip(got, splits[name]):
            assert row["messages"] == [{"role": "user", "content": sample.input},
                                       {"role": "assistant", "content": sample.output}]
            assert (row["input"], row["output"], row["chunk_id"], row["source"], row["start"], row["end"]) == (
                sample.input, sample.output, chunk.id, chunk.source, chunk.start, chunk.end)
    data = card(hub).data.to_dict()
    assert "license" not in data and "language" not in data
    assert {"synthetic", "datagen"} <= set(data["tags"])
    assert data["annotations_creators"] == ["machine-generated"] and data["size_categories"] == ["n<1K"]
    assert data["task_categories"] == ["text-generation"]
    assert data["configs"] == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/train-*"}, {"split": "validation", "path": "data/validation-*"},
        {"split": "test", "path": "data/test-*"}]}]
    text = hub.read(REPO, "README.md").decode()
    assert "<!-- datagen dataset card -->" in text and "datagen generate style_clone --input CORPUS" in text
    provenance = json.loads(hub.read(REPO, "datagen.json"))
    assert provenance["run"]["pipeline"] == "style_clone" and provenance["models"] == {"task": "fake/model"}
    assert provenance["splits"] == {name: len(items) for name, items in splits.items()}
    assert provenance["reproduce"][1] == f"datagen push run {REPO} --val-fraction 0.5"
    assert provenance["reproduce"][0] == "datagen generate style_clone --input CORPUS --out run --model fake/model " \
                                         "--max-tokens 200"
    assert_no_token(run, hub.home, hub.root, texts=(result.stdout, result.stderr))


def test_public_with_a_licence_and_languages_when_asked(hub, run):
    result = push_run(run, REPO, private=False, license="cc-by-4.0", language=["en", "fr"], val_fraction=0)
    assert result.committed and result.created and not result.private and not hub.repo(REPO).private
    data = card(hub).data
    assert data.license == "cc-by-4.0" and data.language == ["en", "fr"]
    assert data.to_dict()["configs"][0]["data_files"] == [{"split": "train", "path": "data/train-*"},
                                                          {"split": "test", "path": "data/test-*"}]
    assert result.files == ["README.md", DATA["test"], DATA["train"], "datagen.json"]


def test_pushing_the_same_run_again_makes_no_commit_and_sends_nothing(hub, run, workspace):
    first = push_run(run, REPO, val_fraction=0.5)
    uploads = hub.count("lfs-upload")
    again = run_cli("push", str(run), REPO, "--val-fraction", "0.5", cwd=workspace)
    assert again.returncode == 0, again.stderr
    assert "already holds this dataset: no new commit" in again.stdout and first.commit in again.stdout
    assert commits(hub) == 2 and hub.count("commit") == 1 and hub.count("lfs-upload") == uploads
    # A change is a commit, and a split that is gone is deleted with it.
    changed = push_run(run, REPO, val_fraction=0)
    assert changed.committed and commits(hub) == 3
    assert set(hub.repo(REPO).head.files) == {".gitattributes", "README.md", "datagen.json", DATA["train"],
                                              DATA["test"]}


def test_parquet_is_the_same_bytes_for_the_same_data(run, tmp_path):
    written = []
    for attempt in range(2):
        with RunStore(run) as store:
            dataset = hf_dataset({"train": split_samples(store)["train"]})
        written.append(write_parquet(dataset["train"].data.table, tmp_path / f"{attempt}.parquet").read_bytes())
    assert written[0] == written[1]
    footer = pq.ParquetFile(tmp_path / "0.parquet").metadata
    assert b"huggingface" in footer.metadata  # the features, for datasets to read them back
    assert not re.search(rb"20\d\d-\d\d-\d\d", written[0])  # no date, no timestamp


def test_an_upload_that_fails_stops_the_push_and_pushing_again_finishes_it(hub, run, workspace):
    hub.fail("lfs-upload", nth=2, status=403)  # the second upload's pre-signed URL refused (not retried)
    stopped = run_cli("push", str(run), REPO, "--val-fraction", "0.5", cwd=workspace)
    line = one_line_error(stopped)
    assert "run the same command again to finish the push" in line
    assert commits(hub) == 1 and hub.count("lfs-upload") < len(DATA)  # the repository made, not all sent, no commit
    finished = run_cli("push", str(run), REPO, "--val-fraction", "0.5", cwd=workspace)
    assert finished.returncode == 0, finished.stderr
    assert commits(hub) == 2 and len(hub.uploads) == len(set(hub.uploads)) == 3  # each object sent once
    assert set(DATA.values()) <= set(hub.repo(REPO).head.files)
    assert_no_token(run, hub.home, hub.root, texts=(stopped.stdout, stopped.stderr, finished.stdout,
                                                    finished.stderr))


def test_a_commit_cut_off_is_made_by_pushing_again_without_uploading_anything_again(hub, run):
    hub.fail("commit", status=0)  # the connection dropped without an answer (not retried by huggingface_hub)
    with pytest.raises(DatagenError, match="run the same command again") as failed:
        push_run(run, REPO, val_fraction=0.5)
    assert "\n" not in str(failed.value) and TOKEN not in str(failed.value)
    assert commits(hub) == 1 and hub.count("lfs-upload") == 3
    assert push_run(run, REPO, val_fraction=0.5).committed
    assert commits(hub) == 2 and hub.count("lfs-upload") == 3


def test_no_token_is_refused_before_anything_is_sent(hub, run, workspace, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    result = run_cli("push", str(run), REPO, cwd=workspace)
    assert one_line_error(result) == f"error: {NO_TOKEN}"
    assert "HF_TOKEN" in result.stderr and "hf auth login" in result.stderr
    with pytest.raises(DatagenError, match="set HF_TOKEN or run `hf auth login`"):
        push_run(run, REPO)
    assert hub.requests == []


def test_the_login_token_is_used_when_hf_token_is_unset(hub, run, workspace, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    (hub.home / "token").write_text(TOKEN)  # what `hf auth login` saves
    result = run_cli("push", str(run), REPO, cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert_no_token(run, hub.root, texts=(result.stdout, result.stderr))


def test_a_wrong_token_is_one_line_that_does_not_quote_it(hub, run, workspace):
    wrong = "hf_wRoNg" + "A1b2C3d4" * 4
    result = run_cli("push", str(run), REPO, cwd=workspace, env={"HF_TOKEN": wrong})
    line = one_line_error(result)
    assert "refused the token (401)" in line and wrong not in result.stderr + result.stdout
    assert REPO.split("/")[0] not in {key[1].split("/")[0] for key in hub.repos}


@pytest.mark.parametrize("repo_id", ["a/b/c", "bad name!", "x/y--z", "x" * 97])
def test_a_bad_repository_id_is_one_line(hub, run, workspace, repo_id):
    result = run_cli("push", str(run), repo_id, cwd=workspace)
    assert "not a Hub repository id" in one_line_error(result)
    with pytest.raises(InputError, match="not a Hub repository id"):
        push_run(run, repo_id)
    assert hub.requests == []


def test_a_bare_name_goes_to_the_tokens_namespace(hub, run):
    result = push_run(run, "lighthouse")
    assert result.repo_id == REPO and hub.repo(REPO).private


def test_an_existing_public_repository_needs_public_and_a_foreign_card_is_kept(hub, run):
    push_run(run, REPO, private=False)
    with pytest.raises(DatagenError, match="existing public dataset; pass --public"):
        push_run(run, REPO, val_fraction=0.3)
    other = "tester/handmade"
    hub.repos[("dataset", other)] = type(hub.repo(REPO))("dataset", other, True)
    hub._new_commit(hub.repo(other), "by hand", "", {"README.md": hub._store_regular(b"# my own card\n")})
    with pytest.raises(DatagenError, match="not a datagen dataset card"):
        push_run(run, other)
    assert hub.read(other, "README.md") == b"# my own card\n"


def test_the_card_has_the_gate_the_scores_and_the_compiled_program(hub, run, tmp_path):
    with RunStore(run) as store:
        done = [chunk for chunk, _ in store.done()]
        for number, chunk in enumerate(done):
            store.set_scores(chunk.id, [{"content": Score(1.0 if number % 2 else 0.5)}])
        state = tmp_path / "compiled" / "style_clone" / "best.json"
        state.parent.mkdir(parents=True)
        state.write_text('{"rephrase": {"demos": []}}')
        state.with_name("best.manifest.json").write_text(json.dumps({"models": {"task": "fake/model",
                                                                               "judge": "fake/judge"}}))
        state.with_name("best.eval.json").write_text('{"baseline": {}}')
        store.set_meta({"compiled": str(state)})
    result = push_run(run, REPO, min_scores={"content": 0.75})
    assert sum(result.splits.values()) == len(done) // 2  # a sample a chunk; every other one passes the gate
    text = hub.read(REPO, "README.md").decode()
    assert "| content | 1.000 |" in text  # the mean over the samples pushed: those that passed the gate
    with RunStore(run) as store:
        held = sum(split == "test" for split, _ in store.splits().values())
    assert "content >= 0.75" in text and f"The held-out test split ({held} of the run's" in text and "drawn from a 0.1 share" in text
    assert "| judge (when compiled) | fake/judge |" in text
    assert {"compiled/best.json", "compiled/best.manifest.json", "compiled/best.eval.json"} <= set(result.files)
    assert hub.read(REPO, "compiled/best.json") == state.read_bytes()
    provenance = json.loads(hub.read(REPO, "datagen.json"))
    assert provenance["gate"] == {"content": 0.75}
    assert provenance["split_rule"]["test_fraction"] == 0.1 and provenance["split_rule"]["by"] == "chunk"
    assert provenance["split_rule"]["how"].startswith(f"The held-out test split ({held} of the run's")
    assert "--compiled compiled/best.json" in provenance["reproduce"][0]
    assert "--min-score content=0.75" in provenance["reproduce"][1]


def test_a_compiled_program_that_is_gone_is_named_but_not_pushed(hub, run, caplog):
    with RunStore(run) as store:
        store.set_meta({"compiled": "/nowhere/best.json"})
    result = push_run(run, REPO)
    assert not any(path.startswith("compiled/") for path in result.files)
    assert "compiled program is gone" in caplog.text
    assert json.loads(hub.read(REPO, "datagen.json"))["run"]["compiled"] == "/nowhere/best.json"


def test_a_server_error_on_the_commit_is_one_line_with_the_status_and_the_hubs_message(hub, run, workspace):
    hub.fail("commit", status=500)  # huggingface_hub does not retry a commit (it might be made twice)
    failed = run_cli("push", str(run), REPO, cwd=workspace)
    line = one_line_error(failed)
    assert f"the Hub answered 500 to POST {hub.url}/api/datasets/{REPO}/commit/main: stand-in fault" in line
    assert "run the same command again" in line and failed.stdout == ""
    assert run_cli("push", str(run), REPO, cwd=workspace).returncode == 0 and commits(hub) == 2


@pytest.mark.parametrize("field", [{"license": "CC BY 4.0"}, {"language": ["english!"]}])
def test_a_licence_or_language_not_shaped_as_the_hubs_is_refused_before_anything_is_sent(hub, run, field):
    with pytest.raises(InputError, match="give"):
        push_run(run, REPO, **field)
    assert hub.requests == []


def test_with_xet_on_the_push_reaches_the_xet_token_endpoint_and_fails_in_one_line(hub, run, monkeypatch):
    """What the stand-in cannot serve: with hf_xet installed, huggingface_hub 2.4 uploads through Xet whatever
    the server says, which is why the tests turn it off (and the real Hub gets Xet uploads)."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    with pytest.raises(DatagenError, match="501") as failed:
        push_run(run, REPO)
    assert hub.count("xet", 501) == 1 and hub.count("lfs-batch", None) == 0 and "\n" not in str(failed.value)


def test_ctrl_c_in_a_push_says_how_to_finish_it_and_pushing_again_does(hub, run, workspace):
    release = hub.hold("commit")  # every object uploaded, the commit on its way
    process = start_cli("push", str(run), REPO, cwd=workspace)
    try:
        assert hub.held.wait(120), "the push never reached its commit"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        release.set()
        process.kill()
    assert process.returncode == 130 and "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert "interrupted (Ctrl-C)" in line and "run the same command again to finish it" in line
    uploads = hub.count("lfs-upload")
    finished = run_cli("push", str(run), REPO, cwd=workspace)
    assert finished.returncode == 0, finished.stderr
    assert hub.count("lfs-upload") == uploads  # nothing sent twice
    assert set(DATA.values()) <= set(hub.repo(REPO).head.files)
    assert_no_token(run, hub.home, hub.root, texts=(stderr, finished.stdout, finished.stderr))


def test_public_asked_for_an_existing_private_repository_changes_nothing(hub, run, caplog):
    push_run(run, REPO, val_fraction=0.5)
    again = push_run(run, REPO, private=False, val_fraction=0.5)
    assert again.private and not again.committed and commits(hub) == 2  # its card does not claim --public either
    assert "stays private" in caplog.text
    assert "--public" not in json.loads(hub.read(REPO, "datagen.json"))["reproduce"][1]


def test_a_hub_that_does_not_answer_is_named_in_one_line(run, workspace, tmp_path):
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{closed.getsockname()[1]}"
    env = {"HF_ENDPOINT": endpoint, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "home"), "HF_HUB_DISABLE_XET": "1"}
    line = one_line_error(run_cli("push", str(run), REPO, cwd=workspace, env=env))
    assert f"failed at {endpoint} (HF_ENDPOINT)" in line and TOKEN not in line


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:notaport", "ftp://hub.example"])
def test_a_malformed_hf_endpoint_is_one_line_naming_it(run, workspace, endpoint):
    line = one_line_error(run_cli("push", str(run), REPO, cwd=workspace, env={"HF_ENDPOINT": endpoint,
                                                                            "HF_TOKEN": TOKEN}))
    assert f"HF_ENDPOINT={endpoint!r}" in line and TOKEN not in line


def test_a_run_not_finished_is_reproduced_with_its_limit(hub, workspace, tmp_path):
    out = tmp_path / "partial"
    make_run(workspace, out, limit=4)
    push_run(out, REPO)
    generate = json.loads(hub.read(REPO, "datagen.json"))["reproduce"][0]
    assert generate.endswith("--max-tokens 200 --limit 4")
