"""Screening a run's samples as a dataset: near-duplicates, contamination and diversity, measured once from the
samples' text (never an LM call), recorded in the run store, and applied by every export.

`measure` reads every finished sample (as reviewed) and records, in the run store:

- the near-duplicate pairs of each field (input, output), down to the floor of each kind, so that an export can
  flag them again at any threshold without measuring (datagen.dataset.quality.near_duplicates);
- the samples that share n-grams with protected text: the dev set and demos of the compiled program the run used,
  the held-out split's chunks (for the samples outside it), and evaluation files a user names
  (datagen.dataset.quality.contamination);
- the diversity of each field beside the source chunks' (datagen.dataset.quality.diversity).

It measures again only when the samples, the protected texts or the settings changed (a fingerprint of them is
recorded), and the embeddings the semantic kind needs are stored as they are computed, so an interrupted measure
goes on where it stopped. `Screen` says what an export leaves out; `flags` applies it to the samples an export keeps.
"""

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from datagen.dataset.quality import (Comparison, Contamination, LexicalIndex, NgramIndex, Pair, Protected,
                                     compare_each, duplicates, semantic_pairs)
from datagen.dataset.quality.contamination import DEFAULT_N
from datagen.dataset.quality.near_duplicates import LEXICAL, LEXICAL_FLOOR, SEMANTIC, SEMANTIC_FLOOR
from datagen.dataset.quality.text_units import TextUnits
from datagen.dataset.review import as_reviewed
from datagen.dataset.splits import recorded_program_texts, recorded_splits
from datagen.errors import DiskError, InputError
from datagen.samples import Sample
from datagen.store import COMPILED, QUALITY, RunStore
from datagen.store.quality import SampleKey

log = logging.getLogger(__name__)

FIELDS = ("input", "output")
# What an export leaves out unless told otherwise: lexical near-duplicates at 0.6. The semantic kind is asked for
# by name: it embeds every sample (about 20 texts a second on 2 cores, so 100,000 samples take over an hour).
DEFAULT_THRESHOLDS = {LEXICAL: 0.6}
FLOORS = {LEXICAL: LEXICAL_FLOOR, SEMANTIC: SEMANTIC_FLOOR}
NEAR_DUPLICATE, CONTAMINATED = "near-duplicate", "contaminated"
# How a contamination's source names the compiled program's dev set, and a held-out chunk (`source_kind`).
_DEV_PREFIX, _HELD_PREFIX = "the dev set or demos of ", "held-out chunk "
# Texts embedded between two commits of their embeddings: what an interrupted measure loses at most.
_EMBED_BATCH = 256


@dataclass(frozen=True)
class Screen:
    """What an export leaves out of a run's samples, and what `measure` measures for it.

    Args:
        near_duplicates: {kind: least similarity that flags}, kinds "lexical" (character 5-gram Jaccard) and
            "semantic" (embedding cosine, which embeds every sample); default {"lexical": 0.6}; None: keep them.
        contaminated: leave out the samples that share an n-gram with protected text; default True.
        ngram: the n-gram length of the contamination test, in words, 5 to 50; default 13 (lm-eval, GPT-3).
        protect: evaluation files whose text no training sample may share (JSONL, JSON, or plain text by
            paragraph), beside the dev set and the held-out split, which are always protected; default None: the
            files the run's last measure protected (none at first), so that a resumed run or a later export keeps
            protecting them; (): none.
    """

    near_duplicates: Mapping[str, float] | None = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    contaminated: bool = True
    ngram: int = DEFAULT_N
    protect: tuple[Path, ...] | None = None

    def as_flags(self) -> list[str]:
        """The `datagen export` / `datagen push` flags that apply this screen (none for the default)."""
        flags = ["--keep-near-duplicates"] if self.near_duplicates is None else \
            [] if dict(self.near_duplicates) == DEFAULT_THRESHOLDS else \
            [f"--near-duplicates {kind}={bar:g}" for kind, bar in self.near_duplicates.items()]
        flags += [] if self.contaminated else ["--keep-contaminated"]
        flags += [] if self.ngram == DEFAULT_N else [f"--ngram {self.ngram}"]
        return flags + [f"--protect {path}" for path in self.protect or ()]

    @property
    def semantic(self) -> bool:
        """Whether the screen needs embeddings (a semantic threshold)."""
        return SEMANTIC in (self.near_duplicates or {})

    def check(self) -> None:
        """Raise InputError for a kind that is not one, or a threshold outside its floor to 1 (pairs are only kept
        down to the floor: 0.4 lexical, 0.8 semantic)."""
        for kind, bar in (self.near_duplicates or {}).items():
            if kind not in (LEXICAL, SEMANTIC):
                raise InputError(f"unknown near-duplicate kind {kind!r}: use lexical or semantic")
            if not FLOORS[kind] <= bar <= 1:
                raise InputError(f"a {kind} near-duplicate threshold is a similarity from {FLOORS[kind]:g} (the "
                                 f"least datagen keeps pairs at) to 1, not {bar:g}")


KEEP_ALL = Screen(near_duplicates=None, contaminated=False)


@dataclass(frozen=True)
class Flag:
    """Why an export leaves a sample out: `reason` (NEAR_DUPLICATE or CONTAMINATED) and `detail`, a sentence that
    names what it repeats or shares ("output nearly repeats c0003#0 (lexical, 0.83)"); for a near-duplicate,
    `other` is the sample `detail` names (for a link to it: datagen view), else None."""

    reason: str
    detail: str
    other: SampleKey | None = field(default=None, compare=False)


@dataclass
class RunQuality:
    """A run's measured quality. `keys`: every finished sample, in the run's order; `pairs`: {field: [Pair]}, by
    position in `keys`; `contamination`: (sample, field, source, shared, share) rows; `diversity`: {field:
    Comparison of the samples with the source chunks}; `settings`: what it was measured with; `fresh`: measured by
    this call (False: read from the store)."""

    keys: list[SampleKey]
    pairs: dict[str, list[Pair]]
    contamination: list[tuple[SampleKey, str, str, int, float]]
    diversity: dict[str, Comparison]
    settings: dict
    fresh: bool = False

    def flags(self, kept: Sequence[SampleKey], screen: Screen) -> dict[SampleKey, Flag]:
        """The samples of `kept` (in the run's order) that `screen` leaves out, each with why: a contaminated one,
        then, among the rest, each near-duplicate of an earlier one kept (so a duplicate whose original an earlier
        filter left out, the quality gate or a review, stays)."""
        found: dict[SampleKey, Flag] = {}
        wanted = set(kept)
        if screen.contaminated:
            for key, name, source, shared, share in self.contamination:
                if key in wanted and key not in found:
                    found[key] = Flag(CONTAMINATED, shared_detail(name, shared, self.settings["ngram"], source, share))
        if screen.near_duplicates:
            rest = [key for key in kept if key not in found]
            position = {key: i for i, key in enumerate(rest)}
            for name, pairs in self.pairs.items():
                ends = [(position.get(self.keys[p.first]), position.get(self.keys[p.second]), p) for p in pairs]
                moved = [Pair(a, b, p.similarity, p.kind) for a, b, p in ends if a is not None and b is not None]
                for dup in duplicates(len(rest), moved, screen.near_duplicates):
                    if rest[dup.index] not in found:
                        found[rest[dup.index]] = Flag(NEAR_DUPLICATE, f"{name} nearly repeats {_named(rest[dup.via])}"
                                                      f" ({dup.kind}, {dup.similarity:.2f})", rest[dup.via])
        return found

    def groups(self, thresholds: Mapping[str, float]) -> list[tuple[SampleKey, SampleKey, str, str, float]]:
        """Every sample the run's near-duplicate groups flag at `thresholds` over all its samples: (flagged sample,
        the sample it is most alike, field, kind, similarity), in the run's order."""
        rows = [(dup.index, dup.via, name, dup.kind, dup.similarity) for name, pairs in self.pairs.items()
                for dup in duplicates(len(self.keys), pairs, thresholds)]
        return [(self.keys[i], self.keys[via], name, kind, similarity)
                for i, via, name, kind, similarity in sorted(rows)]


@dataclass(frozen=True)
class Protection:
    """What a run's samples are screened against: `everyone`, texts protected from every sample (the program's dev
    set and demos, the evaluation files); `held`, the held-out chunks' texts, protected from the samples of the
    chunks outside `test` (the held-out ids)."""

    everyone: list[Protected]
    held: list[Protected]
    test: frozenset[str]

    def contaminated(self, keys: list[SampleKey], texts: list[str], n: int,
                     known: TextUnits | None = None) -> dict[int, Contamination]:
        """{position: Contamination} of `texts` (one field, by the positions of `keys`): the protected text each
        shares the most n-grams with. `known`: where the texts' units and n-grams are read (None: computed)."""
        known = known or TextUnits()
        found = {c.index: c for c in NgramIndex(self.everyone, n, known).check(texts)} if self.everyone else {}
        outside = [i for i, key in enumerate(keys) if key[0] not in self.test]
        for c in NgramIndex(self.held, n, known).check([texts[i] for i in outside]) if self.held else ():
            c = Contamination(outside[c.index], c.source, c.shared, c.share)
            if c.index not in found or c.shared > found[c.index].shared:
                found[c.index] = c
        return found


class SampleIndex:
    """The lexical near-duplicate index of a run's samples, one `LexicalIndex` a field, and their texts' units
    (`TextUnits`): samples added as they come (`add`), their pairs looked up by field (`pairs`), the samples not
    added before (reviewed texts among them) added then, and their contamination and diversity measured from the
    units kept (`screened`). The pairs are those `measure` finds without it (`lexical_pairs`: they do not depend on
    the order in which the texts were added). datagen.runs.screening keeps one in a process of its own during a
    run."""

    def __init__(self):
        self._fields = {name: LexicalIndex() for name in FIELDS}
        self._known = TextUnits()

    def add(self, samples: Iterable[Sample]) -> None:
        """Index each of `samples`' fields, and keep their units and DEFAULT_N-grams."""
        for sample in samples:
            for name, index in self._fields.items():
                text = getattr(sample, name)
                index.add(text)
                self._known.ngrams(text, DEFAULT_N)

    def read(self, texts: Iterable[str]) -> None:
        """Keep the units of `texts` (the run's chunks: the source of its diversity, its held-out texts)."""
        self._known.add(texts)

    def pairs(self, name: str, texts: Sequence[str]) -> list[Pair]:
        """The lexical pairs of `texts`, field `name`'s texts in the run's order (see `lexical_pairs`)."""
        return self._fields[name].pairs(texts)

    def screened(self, keys: list[SampleKey], texts: dict[str, list[str]], chunks: list[str], protection: Protection,
                 n: int, embeddings: dict[str, np.ndarray | None] | None = None,
                 source_embeddings: np.ndarray | None = None) -> tuple[list[tuple], dict[str, Comparison]]:
        """The samples' contamination, as (key, field, source, shared, share) rows, and each field's diversity beside
        the source `chunks` (`measure`'s), their units read from those kept.

        Args:
            keys: every sample's key, in the run's order; texts: {field: its texts, by the positions of `keys`}.
            chunks: the source chunks' texts; protection: what the samples must not share n-grams with.
            n: the n-gram length of the contamination test, in units.
            embeddings, source_embeddings: the fields' and the chunks' unit embeddings, for the diversity's spread
                (None: no spread).
        """
        contamination = []
        for name in FIELDS:
            found = protection.contaminated(keys, texts[name], n, self._known)
            contamination += [(keys[i], name, c.source, c.shared, c.share) for i, c in sorted(found.items())]
        # Each field beside the source chunks, read once for both.
        diversity = compare_each({name: texts[name] for name in FIELDS if texts[name]}, chunks, embeddings,
                                 source_embeddings, tokens=self._known)
        return contamination, diversity


def shared_detail(name: str, shared: int, n: int, source: str, share: float) -> str:
    """A contaminated sample's field in words, as exports, `datagen quality` and the view say it: "output shares 4
    13-grams with evals/test.jsonl:12 (31% of it)" (`shared` n-grams of length `n`, `share` of the source's, 0-1)."""
    return f"{name} shares {shared} {n}-gram{'s' * (shared != 1)} with {source} ({share:.0%} of it)"


DEV_SET, HELD_OUT, PROTECTED_FILE = "the dev set", "the held-out split", "a protected file"


def source_kind(source: str) -> str:
    """What kind of protected text a contamination `source` names: DEV_SET (the compiled program's dev set and
    demos), HELD_OUT (a held-out chunk) or PROTECTED_FILE (an evaluation file's item)."""
    return DEV_SET if source.startswith(_DEV_PREFIX) else HELD_OUT if source.startswith(_HELD_PREFIX) \
        else PROTECTED_FILE


def _named(key: SampleKey) -> str:
    """A sample as reports name it: its chunk id and index ("c0003#0")."""
    return f"{key[0]}#{key[1]}"


def read_protected(path: Path) -> list[Protected]:
    """The protected texts of an evaluation file: each string value of a record (JSONL, a line each, named
    `.jsonl` or `.ndjson`; JSON, `.json`, a list of records or strings; the suffix in any case), else each paragraph
    of a text file. Each named "FILE:N" (line, item or paragraph). A record's fields are protected one by one, so
    that a sample quoting the reference answer alone is found (joined to the question, an answer of 8 to 12 words
    would be inside no 13-gram of its own). A byte-order mark (which Windows tools write) is not text.

    Raises:
        InputError: the file is missing or unreadable, or a JSONL line is not JSON (naming the file and line).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read this protected file: {exc}") from None
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
    elif suffix == ".json":
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
        records = list(enumerate(loaded if isinstance(loaded, list) else [loaded], 1))
    else:
        records = list(enumerate((p for p in text.split("\n\n") if p.strip()), 1))
    return [Protected(f"{path}:{number}", text) for number, record in records for text in _strings(record)
            if text.strip()]


def _strings(value) -> list[str]:
    """Every string inside a JSON value (a record's fields, a chat's message contents), in order."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _recorded_files(recorded: dict) -> tuple[Path, ...]:
    """The evaluation files the run's last measure protected, those still there (a warning names the others)."""
    files = [Path(path) for path in recorded.get("settings", {}).get("files", ())]
    for gone in (path for path in files if not path.is_file()):
        log.warning("%s: protected by this run's last measure, and no longer there: no longer protected", gone)
    return tuple(path for path in files if path.is_file())


def _protected(store: RunStore, files: Sequence[Path], workspace: Path | None) -> Protection:
    """What `measure` protects: the compiled program's dev set and demos, the evaluation `files`, the held-out
    chunks."""
    state = store.meta().get(COMPILED)
    seen = recorded_program_texts(store, workspace, unread="no contamination check against the compiled program's "
                                                           "dev set")
    everyone = [Protected(f"{_DEV_PREFIX}{Path(state).name}", text) for text in seen]
    for path in files:
        everyone += read_protected(Path(path))
    test = frozenset(chunk_id for chunk_id, split in recorded_splits(store).items() if split.split == "test")
    held = [Protected(f"{_HELD_PREFIX}{chunk.id}", chunk.text) for chunk in store.chunks() if chunk.id in test]
    return Protection(everyone, held, test)


def _samples(store: RunStore) -> tuple[list[SampleKey], dict[str, list[str]], list[str]]:
    """(every finished sample's key, in the run's order; {field: its texts, as reviewed}; the done chunks' texts)."""
    reviews = store.reviews()
    keys, texts, chunks = [], {name: [] for name in FIELDS}, []
    for chunk, samples in store.done():
        chunks.append(chunk.text)
        for index, sample in enumerate(samples):
            sample = as_reviewed(sample, reviews.get((chunk.id, index)))
            keys.append((chunk.id, index))
            for name in FIELDS:
                texts[name].append(getattr(sample, name))
    return keys, texts, chunks


def _fingerprint(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def measure(store: RunStore, screen: Screen = Screen(), *, workspace: Path | None = None,
            embed: Callable[[Sequence[str]], np.ndarray] | None = None,
            lexical_index: SampleIndex | None = None) -> RunQuality:
    """The run's quality, read from the store when recorded for the same samples and settings, else measured and
    recorded (see the module's docstring).

    Args:
        store: the run's store.
        screen: the n-gram length, the protected files, and whether to measure the semantic kind (a semantic
            threshold) that `measure` needs; its thresholds themselves are applied later (`RunQuality.flags`).
        workspace: where the compiled program's dev set path is looked up; None: the current folder.
        embed: texts to unit embeddings (datagen.text.embeddings.embed); needed for the semantic kind, which also
            gives the diversity's embedding spread. None: datagen.text.embeddings.embed.
        lexical_index: the samples' lexical pairs found, and units read, as they were recorded (a `SampleIndex`, or
            what has its `pairs` and `screened`: datagen.runs.screening's process); None: found here.

    Raises:
        InputError: a protected file that cannot be read, or an n outside 5 to 50.
    A store that cannot be written (a read-only or full disk) gets its quality measured all the same, not recorded
    (a warning says so).
    """
    screen.check()
    recorded = json.loads(store.meta().get(QUALITY) or "{}")
    files = screen.protect if screen.protect is not None else _recorded_files(recorded)
    keys, texts, chunks = _samples(store)
    protection = _protected(store, files, workspace)
    settings = {"ngram": screen.ngram, "protected": len(protection.everyone), "held_out": len(protection.held),
                "files": [str(Path(path).absolute()) for path in files], "samples": _fingerprint(keys, texts, chunks)}
    # The semantic kind is kept out of the fingerprint: a measure with it holds everything one without it does.
    fingerprint = _fingerprint(settings, [(p.source, p.text) for p in protection.everyone + protection.held])
    settings["semantic"] = screen.semantic or recorded.get("settings", {}).get("semantic", False)
    if recorded.get("fingerprint") == fingerprint and recorded["settings"].get("semantic") >= screen.semantic:
        return _read(store, keys, recorded)
    quality = _measure(store, keys, texts, chunks, protection, settings, embed,
                       lexical_index or SampleIndex())
    try:
        store.set_quality(_pair_rows(quality), _contamination_rows(quality), json.dumps(
            {"fingerprint": fingerprint, "settings": settings,
             "diversity": {name: asdict(c) for name, c in quality.diversity.items()}}))
    except DiskError as exc:
        log.warning("the dataset's quality is measured for this command and not recorded: %s", exc)
    return quality


def _measure(store: RunStore, keys: list[SampleKey], texts: dict[str, list[str]], chunks: list[str],
             protection: Protection, settings: dict, embed: Callable | None, index) -> RunQuality:
    pairs, embeddings = {}, {}
    source_embeddings = _embeddings(store, chunks, embed) if settings["semantic"] else None
    for name in FIELDS:
        own = texts[name]
        pairs[name] = index.pairs(name, own)
        embeddings[name] = _embeddings(store, own, embed) if settings["semantic"] else None
        if embeddings[name] is not None:
            pairs[name] += semantic_pairs(embeddings[name])
    contamination, diversity = index.screened(keys, texts, chunks, protection, settings["ngram"], embeddings,
                                              source_embeddings)
    return RunQuality(keys, pairs, contamination, diversity, settings, fresh=True)


def _embeddings(store: RunStore, texts: Sequence[str], embed: Callable | None) -> np.ndarray:
    """Unit embeddings of `texts`, those stored read back and the rest computed and stored a batch at a time."""
    if embed is None:
        from datagen.text.embeddings import embed
    hashes = [hashlib.sha256(text.encode()).hexdigest() for text in texts]
    known = store.embeddings(sorted(set(hashes)))
    missing = sorted({h: t for h, t in zip(hashes, texts) if h not in known}.items())
    for start in range(0, len(missing), _EMBED_BATCH):
        batch = missing[start:start + _EMBED_BATCH]
        vectors = embed([text for _, text in batch])
        rows = list(zip((h for h, _ in batch), vectors))
        known.update((h, np.asarray(v, dtype=np.float16).astype(np.float32)) for h, v in rows)
        try:
            store.add_embeddings(rows)
        except DiskError:  # a read-only run: embedded for this command alone
            pass
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    matrix = np.stack([known[h] for h in hashes])
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def _pair_rows(quality: RunQuality):
    for name, pairs in quality.pairs.items():
        for p in pairs:
            yield (name, p.kind, *quality.keys[p.first], *quality.keys[p.second], p.similarity)


def _contamination_rows(quality: RunQuality):
    for key, name, source, shared, share in quality.contamination:
        yield (*key, name, source, shared, share)


def _read(store: RunStore, keys: list[SampleKey], recorded: dict) -> RunQuality:
    position = {key: i for i, key in enumerate(keys)}
    pairs: dict[str, list[Pair]] = {name: [] for name in FIELDS}
    for name, kind, a, b, similarity in store.near_duplicate_pairs():
        pairs.setdefault(name, []).append(Pair(position[a], position[b], similarity, kind))
    diversity = {name: Comparison.from_dict(figures) for name, figures in recorded.get("diversity", {}).items()}
    return RunQuality(keys, {name: sorted(own) for name, own in pairs.items()}, store.contaminated(), diversity,
                      recorded["settings"])


def recorded_quality(store: RunStore) -> RunQuality | None:
    """The run's quality as last recorded, read without measuring (for `status` and the view); None when never
    measured, or measured on other samples than the run's now (more of them, or a correction since: a fingerprint
    of the samples' keys and texts, as reviewed, and the chunks' texts is recorded with it)."""
    recorded = json.loads(store.meta().get(QUALITY) or "{}")
    if not recorded:
        return None
    keys, texts, chunks = _samples(store)
    if recorded.get("settings", {}).get("samples") != _fingerprint(keys, texts, chunks):
        return None
    try:
        return _read(store, keys, recorded)
    except KeyError:  # a pair names a sample the run lost since (generate --force)
        return None
