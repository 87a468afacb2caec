"""Pushing a run's dataset to the Hugging Face Hub (`datagen push`): the splits as parquet, the dataset card and the
provenance, in one commit to a dataset repository, private unless asked otherwise.

The repository's layout follows the Hub's conventions for a dataset of data files (hub-docs datasetcard.md and
datasets-manual-configuration.md): `data/SPLIT-00000-of-00001.parquet` per non-empty split, named in the card's
`configs`, so that `datasets.load_dataset(REPO)` reads the splits; `README.md`, the card (datagen.dataset.card);
`datagen.json`, the run's meta, the split rule and the commands that make the dataset again; and, when the run
used a compiled program, its state, manifest and held-out evaluations under `compiled/` (the provenance artefacts
peers push beside their data: distilabel's pipeline.yaml, Data Designer's builder config).

Pushing the same run again makes no commit: every file is written byte for byte the same for the same data
(parquet carries no timestamp, the card no date), and huggingface_hub's `create_commit` leaves out each file whose
content the Hub already holds (the `oid` of the preupload answer) and skips a commit left empty. A push that
stopped half-way is finished by pushing again: the LFS batch API answers "already there" for the objects uploaded
before, so only the rest are sent.

The token is huggingface_hub's own (`get_token`: `HF_TOKEN`, else the one `hf auth login` saved). It is sent to
the Hub only, and never written to a file, printed or put in an error message (datagen.util.redaction).
"""

import json
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from datagen._version import __version__
from datagen.dataset.card import CARD_FILE, hub_card, is_card, tool_versions
from datagen.dataset.export import check_scored, hf_dataset, select_samples
from datagen.dataset.screening import Screen
from datagen.dataset.review import NOT_REJECTED, REVIEWED
from datagen.dataset.splits import split_note
from datagen.errors import DatagenError, InputError
from datagen.store import CHUNK_TOKENS, GATE, QUALITY, SPLIT_RULE, RunStore
from datagen.util.redaction import redact, remember_key
from datagen.util import writing
from datagen.workspace import MANIFEST_SUFFIX, evaluation_path, manifest_path, report_path

log = logging.getLogger(__name__)

REPO_TYPE = "dataset"
DATA_DIR = "data"
COMPILED_DIR = "compiled"
PROVENANCE_FILE = "datagen.json"
NO_TOKEN = "no Hugging Face token: set HF_TOKEN or run `hf auth login`"


@dataclass
class PushResult:
    """What `push_run` did.

    Attributes:
        repo_id: the dataset repository, NAMESPACE/NAME.
        url: its page on the Hub.
        commit: the commit the repository is at after the push (the new one, or the one it was at).
        committed: whether the push made a commit (False: the Hub held every file as it is, nothing was sent).
        private: whether the repository is private.
        created: whether the push created the repository.
        splits: {split: samples pushed}, every split (an empty one has no file).
        files: every file of the push, by its path in the repository.
        left_out: samples the push's screen left out, by reason (datagen.dataset.screening); {}: none.
    """

    repo_id: str
    url: str
    commit: str
    committed: bool
    private: bool
    created: bool
    splits: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)


def hub_token() -> str:
    """The Hugging Face token huggingface_hub would use (`huggingface_hub.get_token`: `HF_TOKEN`, else the one
    `hf auth login` saved), redacted from datagen's output from now on.

    Raises:
        DatagenError: there is none.
    """
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise DatagenError(NO_TOKEN)
    remember_key(token)
    return token


def check_endpoint() -> None:
    """Refuse an `HF_ENDPOINT` that is not an http(s) URL with a host, before huggingface_hub (which parses it when
    imported, datasets importing it too) fails on it with a traceback.

    Raises:
        InputError: in one line, naming the variable and its value.
    """
    value = os.environ.get("HF_ENDPOINT")
    if not value:
        return
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError as exc:
        raise InputError(f"HF_ENDPOINT={value!r}: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"HF_ENDPOINT={value!r}: not an http(s) URL with a host, e.g. https://huggingface.co")


def hub_endpoint() -> str:
    """The Hub's URL: `HF_ENDPOINT` as huggingface_hub reads it (read now, not when it was imported), else its
    default, https://huggingface.co."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def check_repo_id(repo_id: str) -> None:
    """Refuse what is not a Hub repository id (huggingface_hub's `validate_repo_id`: NAMESPACE/NAME or NAME, of
    letters, digits, '-', '_' and '.', at most 96 characters).

    Raises:
        InputError: in one line.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise InputError(f"{repo_id!r}: not a Hub repository id; use NAMESPACE/NAME (letters, digits, '-', '_' "
                         "and '.', at most 96 characters)") from None


_LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]*")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*")


def check_card_fields(license: str | None, language: list[str] | None) -> None:
    """Refuse a licence or a language code that is not shaped as the Hub's are (licence identifiers such as
    cc-by-4.0 or apache-2.0: lower case, digits, '.', '+', '-'; ISO 639 codes such as en or pt-BR). Which ones the
    Hub knows, it checks itself (create_commit sends the card to its validate-yaml endpoint first).

    Raises:
        InputError: in one line.
    """
    if license is not None and not _LICENSE.fullmatch(license):
        raise InputError(f"--license {license!r}: give the Hub's identifier of the licence, e.g. cc-by-4.0, "
                         "apache-2.0 or other")
    for code in language or []:
        if not _LANGUAGE.fullmatch(code):
            raise InputError(f"--language {code!r}: give a language code, e.g. en or pt-BR")


def push_run(run_dir: str | Path, repo_id: str, *, private: bool = True, license: str | None = None,
             language: list[str] | None = None, min_scores: dict[str, float] | None = None,
             reviewed: str | None = None, val_fraction: float = 0.1, system: str | None = None,
             message: str | None = None, screen: Screen = Screen()) -> PushResult:
    """Push a run's samples to a dataset repository on the Hub, in one commit (see the module's docstring).

    Args:
        run_dir: a run folder made by `datagen generate`.
        repo_id: the dataset repository, NAMESPACE/NAME, or NAME for the token's own namespace. Created if it does
            not exist.
        private: create the repository private (the default); False: public. An existing repository keeps its
            visibility, and a public one is refused unless `private` is False (its data would go public unasked).
        license: the dataset's licence as the Hub names it (e.g. "cc-by-4.0"); None: the card has no licence
            (datagen never picks one: the corpus owner's rights decide it).
        language: language codes for the card (e.g. ["en"]); None: none.
        min_scores: leave out the samples scored below a bar, {metric: bar} (see `export.run_samples`); None: none.
        reviewed: leave out the samples a person did not approve (review.REVIEWED) or rejected
            (review.NOT_REJECTED); None: keep them.
        val_fraction: the share of samples in the validation split, 0 to 0.5 (see `export.split_samples`).
        system: a system prompt put first in every conversation; None: none.
        message: the commit's message; None: "datagen push: PIPELINE, N samples".
        screen: the near-duplicates and contaminated samples to leave out (datagen.dataset.screening.Screen; the
            default leaves out lexical near-duplicates at 0.6 and samples sharing a 13-gram with the dev set or the
            held-out split).

    Returns:
        The `PushResult`.

    Raises:
        InputError: a bad repository id, licence, language code or validation fraction.
        DatagenError: no token, a run with nothing to push, or the Hub refused or failed (one line; a push that
            failed half-way is finished by running it again).
    """
    check_repo_id(repo_id)
    check_card_fields(license, language)
    if not 0 <= val_fraction <= 0.5:
        raise InputError(f"--val-fraction must be between 0 and 0.5, got {val_fraction}")
    if reviewed not in (None, REVIEWED, NOT_REJECTED):
        raise ValueError(f"reviewed: {REVIEWED!r}, {NOT_REJECTED!r} or None, got {reviewed!r}")
    token = hub_token()
    run = Path(run_dir)
    with RunStore.existing(run) as store, tempfile.TemporaryDirectory(prefix="datagen-push-") as staging:
        if not store.counts()["done"]:
            raise DatagenError(f"{run}: no finished chunks to push yet (run datagen generate)")
        check_scored(store, min_scores)
        if reviewed == REVIEWED and not store.reviews():
            raise DatagenError(f"{run}: no sample has been reviewed yet (review them with datagen view {run})")
        selection = select_samples(store, min_scores, reviewed, val_fraction, screen)
        splits = selection.splits
        if not any(splits.values()):
            raise DatagenError(f"{run}: no sample passes the gate and the review filter: nothing to push")
        with _hub_errors(repo_id):
            from huggingface_hub import HfApi

            api = HfApi(endpoint=hub_endpoint(), token=token, library_name="datagen", library_version=__version__)
            user = api.whoami()["name"]  # the token checked before anything is written
            full_id = repo_id if "/" in repo_id else f"{user}/{repo_id}"
            info, created = _repository(api, full_id, private)
            # The repository's own visibility (an existing one keeps its own) is what the card's commands say.
            settings = {"private": bool(info.private), "license": license, "language": language,
                        "min_scores": min_scores, "reviewed": reviewed, "val_fraction": val_fraction,
                        "system": system, "screening": (selection, screen)}
            with writing(Path(staging)):  # a full temporary folder: said as such, not as the Hub's failure
                files = _stage(Path(staging), store, run, splits, full_id, settings)
            result = _commit(api, full_id, files, info, created, message or
                             f"datagen push: {store.meta().get('pipeline', 'a run')}, "
                             f"{sum(map(len, splits.values()))} samples", {k: len(v) for k, v in splits.items()})
            result.left_out = selection.left_out_counts
            return result


def _stage(folder: Path, store: RunStore, run: Path, splits: dict, repo_id: str, settings: dict) -> dict[str, Path]:
    """Write every file of the push into `folder`: {path in the repository: file}."""
    files: dict[str, Path] = {}
    dataset = hf_dataset({name: items for name, items in splits.items() if items}, settings["system"])
    for name, split in dataset.items():
        path = f"{DATA_DIR}/{name}-00000-of-00001.parquet"
        files[path] = write_parquet(split.data.table, folder / path)
    meta = store.meta()
    compiled = _compiled_files(meta.get("compiled"), run)
    for path, source in compiled.items():
        files[path] = _copy(source, folder / path)
    models = {"task": meta.get("model", "unknown")}
    for role, name in _manifest_models(compiled).items():
        models[f"{role} (when compiled)"] = name
    counts = store.counts()
    ran = counts["done"] + counts["failed"]
    reproduce = reproduce_commands(meta, run, repo_id, settings, next(iter(compiled), None),
                                   ran if ran < counts["chunks"] else None)
    provenance = provenance_record(store, splits, settings, models, sorted(compiled), reproduce)
    files[PROVENANCE_FILE] = _write_text(folder / PROVENANCE_FILE, json.dumps(provenance, indent=2, sort_keys=True,
                                                                              ensure_ascii=False) + "\n")
    card = hub_card(store, splits, repo_id=repo_id, files=sorted(files), reproduce=reproduce,
                    system=settings["system"], min_scores=settings["min_scores"], reviewed=settings["reviewed"],
                    license=settings["license"], language=settings["language"],
                    val_fraction=settings["val_fraction"], models=models, screening=settings["screening"])
    files[CARD_FILE] = _write_text(folder / CARD_FILE, card)
    return files


def write_parquet(table, path: Path) -> Path:
    """Write an Arrow table as parquet, byte for byte the same for the same table and pyarrow version: pyarrow
    writes no timestamp (its footer holds the schema, with the `huggingface` features, and `created_by`, its
    version); the options that shape the bytes are given rather than left to pyarrow's defaults."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="snappy", version="2.6", use_dictionary=True, write_statistics=True,
                   row_group_size=100_000, data_page_size=1 << 20)
    return path


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact(text), encoding="utf-8")  # redact: a key quoted in the run's meta never leaves
    return path


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return target


def _compiled_files(recorded: str | None, run: Path) -> dict[str, Path]:
    """The compiled program the run used (its meta's "compiled": the state's path, absolute or relative to the
    current folder or to the run folder) as {path in the repository: file}: the state, then its manifest, its
    held-out evaluations and their HTML report where they exist. None recorded, or the state gone: none (with a warning when gone)."""
    if not recorded:
        return {}
    state = next((p for p in (Path(recorded), run / recorded) if p.is_file()), None)
    if state is None:
        log.warning("%s: the run's compiled program is gone; pushed without it (datagen.json names it)", recorded)
        return {}
    found = {f"{COMPILED_DIR}/{state.name}": state}
    for extra in (manifest_path(state), evaluation_path(state), report_path(state)):
        if extra.is_file():
            found[f"{COMPILED_DIR}/{extra.name}"] = extra
    return found


def _manifest_models(compiled: dict[str, Path]) -> dict[str, str]:
    """The models by role a compiled program was optimized with (its manifest's "models"), those named only."""
    manifest = next((path for name, path in compiled.items() if name.endswith(MANIFEST_SUFFIX)), None)
    if manifest is None:
        return {}
    try:
        models = json.loads(manifest.read_text(encoding="utf-8")).get("models") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return {role: str(name) for role, name in models.items() if name}


def reproduce_commands(meta: dict[str, str], run: Path, repo_id: str, settings: dict,
                       compiled: str | None, limit: int | None = None) -> list[str]:
    """The commands that make the dataset again: `datagen generate` with the run's pipeline, model, chunk budget,
    options, compiled program, gate and `limit` (the chunks a run not finished got to; None: every chunk), CORPUS
    standing for the inputs, which the run records by fingerprint only; then this push."""
    # The run folder as the user named it (its name alone when absolute: a local path says nothing on the Hub).
    folder = run.name if run.is_absolute() else str(run)
    generate = ["datagen generate", meta.get("pipeline", "PIPELINE"), "--input CORPUS", f"--out {folder}"]
    generate += [f"--model {meta['model']}"] if meta.get("model") else []
    generate += [f"--max-tokens {meta[CHUNK_TOKENS]}"] if meta.get(CHUNK_TOKENS) else []
    generate += [f"--limit {limit}"] if limit else []
    if compiled:
        generate.append(f"--compiled {compiled}")
    options = json.loads(meta.get("options") or "{}")
    generate += [f"-O {key}={json.dumps(value)}" for key, value in options.items()]
    gate = settings["min_scores"] or json.loads(meta.get(GATE) or "{}")
    generate += [f"--min-score {metric}={bar:g}" for metric, bar in gate.items()]
    push = ["datagen push", folder, repo_id, f"--val-fraction {settings['val_fraction']:g}"]
    push += [f"--min-score {metric}={bar:g}" for metric, bar in (settings["min_scores"] or {}).items()]
    push += {None: [], REVIEWED: ["--reviewed-only"], NOT_REJECTED: ["--exclude-rejected"]}[settings["reviewed"]]
    if settings["system"] is not None:
        push.append(f"--system {json.dumps(settings['system'], ensure_ascii=False)}")
    if settings["license"]:
        push.append(f"--license {settings['license']}")
    push += [f"--language {code}" for code in settings["language"] or []]
    if not settings["private"]:
        push.append("--public")
    if settings.get("screening"):
        push += settings["screening"][1].as_flags()
    return [" ".join(generate), " ".join(push)]


def provenance_record(store: RunStore, splits: dict, settings: dict, models: dict[str, str],
                      compiled: list[str], reproduce: list[str]) -> dict:
    """datagen.json: the run's meta (JSON values decoded), the models by role, the gate, the review counts, the
    splits and how they were drawn, the compiled program's files, and the commands that make the dataset again."""
    meta = {}
    for key, value in store.meta().items():
        try:
            meta[key] = json.loads(value) if key in (GATE, "options", QUALITY) else value
        except ValueError:
            meta[key] = value
    reviews = list(store.reviews().values())
    return {
        **tool_versions(), "run": meta, "models": models,
        "gate": settings["min_scores"] or {}, "reviewed_filter": settings["reviewed"],
        "reviews": {"reviewed": len(reviews), "good": sum(r.verdict == "good" for r in reviews),
                    "bad": sum(r.verdict == "bad" for r in reviews), "corrected": sum(r.corrected for r in reviews)},
        "splits": {name: len(items) for name, items in splits.items()},
        "split_rule": {**json.loads(store.meta().get(SPLIT_RULE) or "{}"), "val_fraction": settings["val_fraction"],
                       "how": split_note(store, settings["val_fraction"])},
        "system": settings["system"], "compiled": compiled, "reproduce": reproduce,
        "left_out": settings["screening"][0].left_out_counts if settings.get("screening") else {},
    }


def _repository(api, repo_id: str, private: bool):
    """The repository's info and whether this push created it: created with `private` when missing; an existing
    public one is refused unless `private` is False, an existing private one stays private (with a warning)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = api.repo_info(repo_id, repo_type=REPO_TYPE)
    except RepositoryNotFoundError:
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        return api.repo_info(repo_id, repo_type=REPO_TYPE), True
    if not info.private and private:
        raise DatagenError(f"{repo_id}: an existing public dataset; pass --public to push to it (datagen leaves a "
                           "repository's visibility as it is)")
    if info.private and not private:
        log.warning("%s: an existing private dataset; it stays private (change it on the Hub)", repo_id)
    return info, False


def _commit(api, repo_id: str, files: dict[str, Path], info, created: bool, message: str,
            splits: dict[str, int]) -> PushResult:
    """Commit `files` in one commit to the repository (`info`, as `_repository` found it), deleting the files of
    an earlier push under data/ and compiled/ that this one no longer has; a commit that would change nothing is not
    made."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    remote = set(api.list_repo_files(repo_id, repo_type=REPO_TYPE))
    if CARD_FILE in remote:
        _check_remote_card(api, repo_id)
    stale = sorted(path for path in remote - set(files) if path.split("/")[0] in (DATA_DIR, COMPILED_DIR))
    operations = [CommitOperationAdd(path, str(local)) for path, local in sorted(files.items())]
    operations += [CommitOperationDelete(path) for path in stale]
    with _quiet_progress():
        commit = api.create_commit(repo_id, operations, commit_message=message, repo_type=REPO_TYPE)
    return PushResult(repo_id, f"{api.endpoint}/datasets/{repo_id}", commit.oid, commit.oid != info.sha,
                      bool(info.private), created, splits, sorted(files))


def _check_remote_card(api, repo_id: str) -> None:
    """Refuse to replace a README.md on the Hub that datagen did not write (as a local export keeps one)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    response = get_session().get(hf_hub_url(repo_id, CARD_FILE, repo_type=REPO_TYPE, endpoint=api.endpoint),
                                 headers=build_hf_headers(token=api.token, library_name="datagen",
                                                          library_version=__version__))
    hf_raise_for_status(response)
    if not is_card(response.text):
        raise DatagenError(f"{repo_id}: its README.md is not a datagen dataset card; push to another repository so "
                           "that it is not overwritten")


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """huggingface_hub's upload bars off for the block (a command prints its own lines), as they were after."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


@contextmanager
def _hub_errors(repo_id: str) -> Iterator[None]:
    """The Hub's errors as one-line DatagenErrors that never quote the token; a failure after the repository was
    reached says that pushing again finishes the push."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        import httpx2

        transport: tuple[type[Exception], ...] = (httpx2.HTTPError,)
    except ImportError:  # another huggingface_hub: its own errors still come as HfHubHTTPError or OSError
        transport = ()
    again = "; run the same command again to finish the push (files already uploaded are not sent again)"
    try:
        yield
    except RepositoryNotFoundError:
        raise DatagenError(f"{repo_id}: the Hub has no such dataset repository for this token, or the token may "
                           "not create it") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise DatagenError("the Hub refused the token (401): set HF_TOKEN to a valid token or run "
                               "`hf auth login`") from None
        if status == 403:
            raise DatagenError(f"{repo_id}: the token may not write to it (403): use a token with write access"
                               ) from None
        raise DatagenError(f"push to {repo_id} failed: {_http_error(exc)}{again}") from None
    except RuntimeError as exc:  # an LFS upload that failed: huggingface_hub's message names the file
        cause = f" ({_one_line(exc.__cause__)})" if exc.__cause__ else ""
        raise DatagenError(f"push to {repo_id} stopped: {_one_line(exc)}{cause}{again}") from None
    except ValueError as exc:  # the Hub refused the card's metadata, or answered malformed
        raise DatagenError(f"push to {repo_id} failed: {_one_line(exc)}") from None
    except (*transport, OSError) as exc:  # nothing answered, or the connection broke: say where it went
        raise DatagenError(f"push to {repo_id} failed at {hub_endpoint()} (HF_ENDPOINT): "
                           f"{_one_line(exc) or type(exc).__name__}{again}") from None


def _http_error(exc) -> str:
    """What the Hub answered, in a line: the status, the request (its URL without the query) and the Hub's
    message."""
    response = exc.response
    if response is None:
        return _one_line(exc)
    request = f"{response.request.method} {str(response.url).split('?')[0]}"
    said = f": {_one_line(exc.server_message)}" if getattr(exc, "server_message", None) else ""
    return redact(f"the Hub answered {response.status_code} to {request}{said}")


def _one_line(exc: BaseException | str) -> str:
    return redact(" ".join(str(exc).split()))
