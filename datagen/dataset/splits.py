"""Held-out splits: the chunks of a run that a trained model must never see, drawn once and recorded in the run store.

Each chunk of a run is `train` or `test`. The draw is by chunk id (a share of the chunks) or by source (whole
files), a hash of either, so that it is the same on every machine and survives the run growing. Three rules
override the draw, each keeping text a model could have learned out of `test`:

- Near-duplicate chunks (the same passage twice, one chunk inside another) form a group, and a group is in one
  split: `test` only when the draw puts every member there. A chunk is a near-duplicate of another when most of
  its word 3-grams are in the other (containment, estimated with MinHash and an LSH index: `datasketch`).
- A group holding a text the program saw (an item of the dev set it was optimized on, a demo) is `train`.
- A chunk once recorded `train` stays `train` (a model trained on an earlier export saw it), and so does a chunk
  like the text of a train chunk a restarted run dropped (`generate --force` with other chunk boundaries: the
  store's retired texts); a `test` chunk whose group gains a `train` member moves to `train`, never the other way.

The validation split is carved from the non-test chunks at export (`validation_group`), by near-duplicate group too.
"""

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from datagen.dataset.devset import read_devset
from datagen.dataset.quality.minhash import UnionFind, candidate_pairs, signatures, word_shingles
from datagen.errors import DatagenError, DiskError
from datagen.store import COMPILED, SPLIT_RULE, SPLIT_SEEN, RunStore
from datagen.workspace import SplitSettings, read_manifest

log = logging.getLogger(__name__)

# Word 3-grams at 60% containment, measured on four novels (bench/near_duplicates.py): no two of their 1,816
# 256-token chunks grouped (at 64 tokens, 12 of 7,117, each an illustration caption quoting the text: a true
# repeat), and a chunk with 10% of its words changed grouped with its original 96% of the time (5-grams at 80%, near
# Lee et al. 2022's NearDup, found 1%: a changed word breaks 5 shingles).
SHINGLE_WORDS = 3
# A near-duplicate: at least this share of the smaller text's shingles are in the other one.
CONTAINMENT = 0.6
# The LSH index's Jaccard threshold for candidates, low enough to find a chunk inside one up to about twice its
# size at CONTAINMENT (Jaccard = c*m / (M + m - c*m) = 0.25 for m/M = 1/2); each candidate is then checked.
LSH_THRESHOLD = 0.2


@dataclass(frozen=True)
class Split:
    """One chunk's split: "train" or "test", its near-duplicate group (the group's smallest chunk id) and what
    decided it ("drawn", "near-duplicate", "seen by the program", "trained on")."""

    split: str
    group: str
    why: str


def _unit_hash(salt: str, key: str) -> float:
    """`key` hashed into [0, 1), salted so that the test draw and the validation carve are independent."""
    return int(hashlib.sha256(f"{salt}/{key}".encode()).hexdigest()[:16], 16) / 2 ** 64


def validation_group(group: str, val_fraction: float) -> bool:
    """Whether a non-test near-duplicate group goes to the validation split at export: its id's hash is below
    `val_fraction` (the same group in the same split on every export)."""
    return _unit_hash("validation", group) < val_fraction


def shingles(text: str) -> set[str]:
    """The text's word 3-grams (lower-cased runs of letters and digits); a text of fewer words is one shingle."""
    return word_shingles(text, SHINGLE_WORDS)


def near_duplicate_groups(texts: Sequence[str]) -> list[int]:
    """Group near-duplicate texts: for each text, the index of its group's first text.

    Two texts are near-duplicates when at least CONTAINMENT of the smaller one's word 3-grams are in the other,
    estimated from their MinHash Jaccard similarity and sizes (|A∩B| = J(|A|+|B|)/(1+J)); candidates come from
    an LSH index (Broder 1997; Leskovec et al., Mining of Massive Datasets, ch. 3; datasketch's MinHashLSH).
    Groups are closed under the relation (a chain of near-duplicates is one group).
    """
    sets = [shingles(text) for text in texts]
    hashes = signatures([[s.encode() for s in own] for own in sets])
    groups = UnionFind(len(texts))
    for i, j in candidate_pairs(hashes, LSH_THRESHOLD, skip=lambda i: not sets[i]):
        if _contained(hashes[i].jaccard(hashes[j]), len(sets[i]), len(sets[j])):
            groups.join(i, j)
    return groups.roots()


def _contained(jaccard: float, size_a: int, size_b: int) -> bool:
    shared = jaccard * (size_a + size_b) / (1 + jaccard)
    return shared >= CONTAINMENT * min(size_a, size_b)


def program_seen_texts(state: str | Path | None, workspace: Path | None = None) -> list[str]:
    """The texts a compiled program saw while it was optimized: its dev set's items (the manifest's `dev`,
    looked up as given, then in `workspace`, then in the workspace the program was saved in, the folder above
    compiled/PIPELINE/: the path is as `optimize` was given it) and every string in its demos. None: no compiled
    program, nothing.

    A dev set that is no longer there is logged and skipped; its items that became demos are still found."""
    if state is None:
        return []
    manifest = read_manifest(state)
    texts: list[str] = []
    dev = (manifest.get("dev") or {}).get("path")
    if dev:
        homes = [workspace or Path(), *Path(state).resolve().parents[2:3]]  # datagen quality RUN run from elsewhere
        found = next((p for p in (Path(dev), *(home / dev for home in homes)) if p.is_file()), None)
        if found is None:
            log.warning("%s: the dev set it was optimized on, %s, is not there; only its demos are kept out of the "
                        "held-out split", state, dev)
        else:
            texts += [item.chunk.text for item in read_devset(found)]
    saved = json.loads(Path(state).read_text(encoding="utf-8"))
    for predictor in saved.values():
        for demo in (predictor.get("demos") or []) if isinstance(predictor, dict) else []:
            texts += [value for value in demo.values() if isinstance(value, str) and value.strip()]
    return texts


def _rule_json(rule: SplitSettings) -> str:
    return json.dumps(rule.model_dump(), sort_keys=True)


def _fingerprint(texts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for text in sorted(set(texts)):
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()[:16]


def _drawn_sources(sources: list[str], fraction: float) -> set[str]:
    """The sources held out whole: the ceil(fraction * n) with the smallest hashes (one at least, when there are
    two or more and fraction > 0), so that a small corpus still gets a test file."""
    if fraction <= 0 or len(sources) < 2:
        return set()
    ranked = sorted(sources, key=lambda source: _unit_hash("test", source))
    return set(ranked[:min(len(sources) - 1, math.ceil(fraction * len(sources)))])


@dataclass(frozen=True)
class _Standing:
    """Where a run's split stands before a draw: the store's meta, its recorded splits and its chunk count, the texts
    kept out of test (`outside`: the program's, then the retired ones), their fingerprint, and whether the rule
    changed."""

    meta: dict[str, str]
    recorded: dict[str, tuple[str, str]]
    chunks: int
    outside: list[str]
    seen_key: str
    changed: bool

    @property
    def whole(self) -> bool:
        """Whether every chunk has its split (store.splits() holds the run's own chunks only), drawn by the rule
        and with the texts kept out as they are now."""
        return (not self.changed and len(self.recorded) == self.chunks
                and self.meta.get(SPLIT_SEEN, "") == self.seen_key)


def _standing(store: RunStore, rule: SplitSettings, seen: Sequence[str], force: bool) -> _Standing:
    """Where the run's split stands (see `draw_splits` for the DatagenError a changed rule raises)."""
    meta, recorded = store.meta(), store.splits()
    changed = SPLIT_RULE in meta and meta[SPLIT_RULE] != _rule_json(rule)
    if changed and not force and recorded:  # a rule recorded ahead of a draw never made (`reserve_rule`) binds nothing
        was = json.loads(meta[SPLIT_RULE])
        raise DatagenError(f"{store.path.parent}: its held-out split was drawn with test_fraction "
                           f"{was['test_fraction']} by {was['by']}, not {rule.test_fraction} by {rule.by} ([splits] "
                           "in datagen.toml): use a new --out, or --force to draw by the new rule (chunks already in "
                           "train stay there)")
    outside = list(seen) + store.retired_texts()  # retired: the text of train chunks a restarted run dropped
    seen_key = _fingerprint(outside) if outside else meta.get(SPLIT_SEEN, "")
    return _Standing(meta, recorded, store.counts()["chunks"], outside, seen_key, changed)


def split_texts(store: RunStore, rule: SplitSettings, seen: Sequence[str] = (), *,
                force: bool = False) -> list[str] | None:
    """The texts a draw of the run's split groups (`near_duplicate_groups` of them is what `draw_splits` takes as
    `groups`): the run's chunks' in the store's order, then `seen`, then the store's retired texts. None when
    there is nothing to draw: every chunk has its split, by `rule`, with `seen` kept out. Arguments and DatagenError
    as `draw_splits`'s: the rule is checked here, so that a run can refuse before it spends."""
    standing = _standing(store, rule, seen, force)
    return None if standing.whole else [chunk.text for chunk in store.chunks()] + standing.outside


def reserve_rule(store: RunStore, rule: SplitSettings) -> bool:
    """Record `rule` as the split rule of a run that has no split recorded yet, ahead of its draw: a draw another
    command makes before the run's own (an export of the run killed before it: `recorded_splits`) is made by it,
    and the run, resumed, is not refused for a rule it never drew by. False, recording nothing, for a run with
    splits recorded: its rule is theirs."""
    if store.splits():
        return False
    store.set_meta({SPLIT_RULE: _rule_json(rule)})
    return True


def draw_splits(store: RunStore, rule: SplitSettings, seen: Sequence[str] = (), *, force: bool = False,
                groups: Sequence[int] | None = None) -> dict[str, Split]:
    """Draw the held-out split of the run's chunks that have none yet, re-check the groups, and record both.

    Args:
        store: the run's store, its chunks added.
        rule: the draw: `test_fraction` (0: no test split) and `by` ("chunk": a share of the chunks by chunk id;
            "source": whole files, the share of the sources with the smallest hashes).
        seen: texts the program saw (`program_seen_texts`): their near-duplicates are kept in train.
        force: draw by `rule` although the run's split was drawn by another (generate --force: the run starts
            afresh). The chunks recorded in train stay there all the same; a test chunk the new rule puts in
            train moves.
        groups: `near_duplicate_groups(split_texts(store, rule, seen))`, found elsewhere (the near-duplicate
            index's process of a run: datagen.runs.screening); None, or a list of another length: found here.

    Returns:
        {chunk id: Split} for every chunk of the run. A store that cannot record them (a run folder on a
        read-only or full disk) gets them drawn all the same, with a warning.

    Raises:
        DatagenError: the run's split was drawn by another rule, without `force` (a new rule may move chunks a
            model trained on into test, were it not for the chunks recorded in train staying there).
    """
    standing, seen = _standing(store, rule, seen, force), list(seen)
    recorded = standing.recorded
    if standing.whole:  # checked before the chunks are read, so that a resume does not read every text for nothing
        return {chunk_id: Split(split, group, "recorded") for chunk_id, (split, group) in recorded.items()}
    chunks = list(store.chunks())
    texts = [chunk.text for chunk in chunks] + standing.outside
    roots = list(groups) if groups is not None and len(groups) == len(texts) else near_duplicate_groups(texts)
    members: dict[int, list[int]] = {}
    for i, group_root in enumerate(roots):
        members.setdefault(group_root, []).append(i)
    held_sources = _drawn_sources(sorted({c.source for c in chunks}), rule.test_fraction) if rule.by == "source" \
        else set()

    def drawn(i: int) -> bool:
        chunk = chunks[i]
        if rule.by == "source":
            return chunk.source in held_sources
        return _unit_hash("test", chunk.id) < rule.test_fraction

    splits: dict[str, Split] = {}
    for group in members.values():
        ours = [i for i in group if i < len(chunks)]
        if not ours:
            continue
        name = min(chunks[i].id for i in ours)
        if any(i >= len(chunks) + len(seen) for i in group):
            split, why = "train", "trained on"
        elif len(ours) < len(group):
            split, why = "train", "seen by the program"
        elif all(drawn(i) for i in ours):
            trained = any(recorded.get(chunks[i].id, ("test",))[0] == "train" for i in ours)
            split, why = ("train", "trained on") if trained else ("test", "drawn")
        else:
            split, why = "train", "near-duplicate"
        for i in ours:  # a chunk whose own draw says train is in train by its draw, whatever its group did
            splits[chunks[i].id] = Split(split, name, "drawn" if split == "train" and not drawn(i) else why)
    try:
        store.set_splits(((cid, s.split, s.group, s.why) for cid, s in splits.items()),
                         {SPLIT_RULE: _rule_json(rule), SPLIT_SEEN: standing.seen_key})
    except DiskError as exc:  # drawn the same way each time, until the store can record it
        log.warning("the held-out split is drawn for this command and not recorded: %s", exc)
    return splits


def split_note(store: RunStore, val_fraction: float = 0.0) -> str:
    """A paragraph for a dataset card: how the run's held-out split was drawn, what kept chunks out of it, and how
    the validation split was carved (`val_fraction`, 0: none)."""
    rule, counts = _recorded_rule(store), store.split_counts()
    validation = (f" The validation split is carved from the rest at export: the near-duplicate groups whose id "
                  f"hashes below {val_fraction:g}." if val_fraction else "")
    if rule is None or not rule.test_fraction:
        return "No test split is held out of this run." + validation
    test, train = counts.get("test", {}), counts.get("train", {})
    how = (f"whole source files, the {rule.test_fraction:g} share with the smallest hashes of their names"
           if rule.by == "source" else f"a {rule.test_fraction:g} share of the chunks, by a hash of each chunk id")
    moved = [f"{n} {why}" for why, n in sorted(train.items()) if why != "drawn"]
    total = sum(n for by_why in counts.values() for n in by_why.values())
    return (f"The held-out test split ({sum(test.values())} of the run's {total} chunks, those not run yet included) "
            f"was drawn from {how}, once, and recorded in the "
            "run store; training files leave it out. Near-duplicate chunks (60% of one's word 3-grams in the other, "
            "by MinHash) share a split, chunks like the program's dev-set items and demos stay in train, and no "
            "chunk ever moves from train to test" + (f" (kept in train: {', '.join(moved)})" if moved else "")
            + "." + validation)


def _recorded_rule(store: RunStore) -> SplitSettings | None:
    """The rule the run's split was drawn by; None: none was drawn yet."""
    rule = store.meta().get(SPLIT_RULE)
    return SplitSettings(**json.loads(rule)) if rule else None


def recorded_splits(store: RunStore) -> dict[str, Split]:
    """The run's recorded splits, {chunk id: Split}; chunks without one (a run made before datagen drew held-out
    splits, or killed before its draw) get theirs first, by the run's recorded rule, else the default ([splits] as
    SplitSettings() says), keeping the text its compiled program saw out of test (`program_seen_texts` of the
    program the run recorded; a program no longer there is said in a warning)."""
    recorded = store.splits()  # only the run's own chunks: all of them when as many as the run has
    if len(recorded) == store.counts()["chunks"]:
        return {chunk_id: Split(split, group, "recorded") for chunk_id, (split, group) in recorded.items()}
    seen = recorded_program_texts(store, unread="the held-out split is drawn without the text the run's compiled "
                                                "program saw")
    return draw_splits(store, _recorded_rule(store) or SplitSettings(), seen)


def recorded_program_texts(store: RunStore, workspace: Path | None = None, *, unread: str) -> list[str]:
    """`program_seen_texts` of the compiled program the run recorded ([] for none; `workspace` as it takes it); []
    too when the program cannot be read (moved or gone since the run), with a warning that starts with `unread`,
    what goes without it."""
    try:
        return program_seen_texts(store.meta().get(COMPILED), workspace)
    except (DatagenError, OSError, ValueError) as exc:
        log.warning("%s: %s", unread, exc)
        return []


def held_out(store: RunStore) -> bool:
    """Whether the run holds a test split out: its rule's test_fraction is above 0 (the split may still be empty)."""
    return (_recorded_rule(store) or SplitSettings()).test_fraction > 0
