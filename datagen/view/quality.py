"""A run's dataset-level quality for `datagen view`: its quality page and the line on a flagged sample's page.

What is shown is what `datagen quality` or an export last recorded in the run store
(datagen.dataset.screening.recorded_quality), read through the view's read-only connection: the view never measures
(that would write to the run), it says how to. Sample keys are (chunk id, index), as the sample pages' URLs.
"""

from dataclasses import dataclass, field

import datagen.view.data as data
from datagen.dataset.review import as_reviewed
from datagen.dataset.screening import CONTAMINATED, DEFAULT_THRESHOLDS, Flag, RunQuality, Screen, recorded_quality
from datagen.samples import Sample
from datagen.store import QUALITY, RunStore
from datagen.store.quality import SampleKey


@dataclass(frozen=True)
class Recorded:
    """A run's recorded quality and what its pages take from it.

    Args:
        quality: as recorded for the samples the run holds now; None when there is none.
        stale: a quality is recorded, but for other samples (generate added, retried or redid some since, or a
            reviewer corrected one).
        groups: the near-duplicates at DEFAULT_THRESHOLDS, `RunQuality.groups` rows (flagged sample, the sample it
            is most alike, field, kind, similarity), in the run's order.
        flags: what a plain `datagen export RUN` leaves out ({sample: Flag}): the default screen over every sample.
    """

    quality: RunQuality | None
    stale: bool = False
    groups: list[tuple[SampleKey, SampleKey, str, str, float]] = field(default_factory=list)
    flags: dict[SampleKey, Flag] = field(default_factory=dict)


def recorded(source: data.Source) -> Recorded:
    """The run's recorded quality, read once while the run store and its reviews do not change (a large run's takes
    a read of every sample: see data.Source.cached; a correction makes the record stale)."""
    with source.read() as db:
        return source.cached(db, ("quality",), lambda: _recorded(RunStore.over(db)), reviews=True)


def _recorded(store: RunStore) -> Recorded:
    quality = recorded_quality(store)
    if quality is None:
        return Recorded(None, stale=QUALITY in store.meta())
    return Recorded(quality, groups=quality.groups(DEFAULT_THRESHOLDS), flags=quality.flags(quality.keys, Screen()))


def named(key: SampleKey) -> str:
    """A sample as `datagen quality` and the export's flags name it: "CHUNK#INDEX"."""
    return f"{key[0]}#{key[1]}"


def quality_page(source: data.Source, duplicates: int = 1, contaminated: int = 1) -> dict:
    """What the quality page shows: `recorded` (Recorded), and when it holds a quality, a page of data.PAGE
    near-duplicate rows (`duplicates`: {flagged, of, field, kind, similarity, text, original}, the texts of that
    field as measured: as reviewed) and one of contaminated rows (`contaminated`: {sample, field, source, shared,
    share, text}), with how many samples each flags (`duplicate_samples`, `contaminated_samples`) and rows there
    are (`duplicate_rows`, `contaminated_rows`), the thresholds (`thresholds`) and each way a field narrowed its
    source (`narrowed`: (field, sentence) pairs), and which of the samples shown a reviewer corrected (`corrected`: a
    correction saved since the last measure counts from the next one).

    Args:
        source: the run.
        duplicates, contaminated: the page of each list asked for, from 1.
    """
    found = recorded(source)
    if found.quality is None:
        return {"recorded": found}
    groups, contamination = found.groups, found.quality.contamination
    shown_groups = groups[(duplicates - 1) * data.PAGE:duplicates * data.PAGE]
    shown_contamination = contamination[(contaminated - 1) * data.PAGE:contaminated * data.PAGE]
    keys = {key for row in shown_groups for key in row[:2]} | {row[0] for row in shown_contamination}
    with source.read() as db:
        samples, corrected = _samples(RunStore.over(db), keys)
    return {
        "recorded": found, "corrected": corrected,
        "duplicates": [{"flagged": flagged, "of": of, "field": name, "kind": kind, "similarity": similarity,
                        "text": getattr(samples.get(flagged), name, None),
                        "original": getattr(samples.get(of), name, None)}
                       for flagged, of, name, kind, similarity in shown_groups],
        "contaminated": [{"sample": key, "field": name, "source": protected, "shared": shared, "share": share,
                          "text": getattr(samples.get(key), name, None)}
                         for key, name, protected, shared, share in shown_contamination],
        "duplicate_samples": len({row[0] for row in groups}), "duplicate_rows": len(groups),
        "contaminated_samples": len({row[0] for row in contamination}), "contaminated_rows": len(contamination),
        "thresholds": DEFAULT_THRESHOLDS,
        "narrowed": [(name, line) for name, comparison in found.quality.diversity.items()
                     for line in comparison.narrowed]}


def _samples(store: RunStore, keys: set[SampleKey]) -> tuple[dict[SampleKey, Sample], set[SampleKey]]:
    """The samples `keys` name as the measure reads them (a reviewer's correction in place of the generated text;
    one the run no longer has is left out), and those of them that are corrected."""
    found, corrected = {}, set()
    for chunk_id in sorted({key[0] for key in keys}):
        generated = (store.result(chunk_id) or {}).get("samples") or []
        for key in sorted(key for key in keys if key[0] == chunk_id):
            if key[1] < len(generated):
                review = store.review(*key)
                found[key] = as_reviewed(generated[key[1]], review)
                if review is not None and review.corrected:
                    corrected.add(key)
    return found, corrected


def sample_flag(source: data.Source, chunk_id: str, index: int) -> dict | None:
    """Why a plain export leaves this sample out, as the parts of a sentence around the sample it repeats (for a
    link): {reason, before, other (a sample key, or None for a contaminated one), after, keep (the export flag that
    keeps it)}; None when it is kept, or
    the run's quality is not recorded for its samples."""
    flag = recorded(source).flags.get((chunk_id, index))
    if flag is None:
        return None
    before, name, after = flag.detail.partition(named(flag.other)) if flag.other else (flag.detail, "", "")
    return {"reason": flag.reason, "before": before, "other": flag.other if name else None, "after": after,
            "keep": "--keep-contaminated" if flag.reason == CONTAMINATED else "--keep-near-duplicates"}
