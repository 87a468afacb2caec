"""Human review of a run's samples: what a verdict, a rating and a correction mean for the dataset.

A person reviews a sample in `datagen view`: good or bad, 1-5 on each of the pipeline's criteria, a comment, or
a correction of its input or output. Reviews live in the run store (`RunStore.set_review`), beside the generated
sample, which is never overwritten. A correction is the person's fixed version of the sample: it counts as
approved, and every export writes it instead of the generated text. Exports can keep only approved samples
(`REVIEWED`) or leave out the rejected ones (`NOT_REJECTED`); a sample a person approved is exported whatever a
`--min-score` gate says of the generated text (the person's verdict is the better one).
"""

from collections.abc import Iterable
from dataclasses import replace

from datagen.errors import DatagenError
from datagen.samples import Sample
from datagen.store import Review

VERDICTS = ("good", "bad")
RATING_RANGE = (1, 5)
# Export filters by review: approved samples only, or every sample but the rejected ones.
REVIEWED, NOT_REJECTED = "reviewed", "not_rejected"


def approved(review: Review | None) -> bool:
    """Rated good, or corrected (a correction is the reviewer's own fixed version)."""
    return review is not None and (review.verdict == "good" or review.corrected)


def rejected(review: Review | None) -> bool:
    """Rated bad and not corrected."""
    return review is not None and review.verdict == "bad" and not review.corrected


def keeps(review: Review | None, kind: str | None) -> bool:
    """Whether an export with review filter `kind` (None, REVIEWED or NOT_REJECTED) keeps a sample."""
    if kind == REVIEWED:
        return approved(review)
    if kind == NOT_REJECTED:
        return not rejected(review)
    return True


def as_reviewed(sample: Sample, review: Review | None) -> Sample:
    """The sample as it is exported: with the reviewer's correction of its input and output, where there is one."""
    if review is None or not review.corrected:
        return sample
    return replace(sample, input=sample.input if review.input is None else review.input,
                   output=sample.output if review.output is None else review.output)


def checked_review(chunk_id: str, sample: int, *, verdict: str | None = None, ratings: dict | None = None,
                   comment: str | None = None, corrected_input: str | None = None,
                   corrected_output: str | None = None, generated: Sample | None = None,
                   criteria: Iterable[str] = ()) -> Review:
    """A review built from what a person entered, refused with a one-line DatagenError when it is malformed:
    `verdict` "good", "bad" or None; `ratings` {criterion: 1-5} on names in `criteria` (an empty value drops the
    rating); the corrections as edited texts, kept only where they differ from the `generated` sample's (so that
    saving an unedited form is no correction)."""
    if verdict not in (None, *VERDICTS):
        raise DatagenError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    known = set(criteria)
    checked: dict[str, int] = {}
    for name, value in (ratings or {}).items():
        if value in (None, ""):
            continue
        if name not in known:
            raise DatagenError(f"unknown criterion {name!r}: rate on {', '.join(sorted(known)) or 'none'}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = None
        if number is None or isinstance(value, bool) or not RATING_RANGE[0] <= number <= RATING_RANGE[1]:
            raise DatagenError(f"rating of {name!r} must be a whole number from {RATING_RANGE[0]} to "
                               f"{RATING_RANGE[1]}, got {value!r}")
        checked[name] = number

    def correction(edited: str | None, original: str | None) -> str | None:
        if edited is None:
            return None
        # A browser's textarea sends every line break as \r\n, whatever the text had (\n, \r\n or \r): compared
        # with the generated text's line breaks made alike, so that a sample of a file with \r\n line ends is not
        # "corrected" by a verdict.
        edited = edited.replace("\r\n", "\n")
        same = original is not None and edited == original.replace("\r\n", "\n").replace("\r", "\n")
        return None if same else edited

    return Review(chunk_id, sample, verdict, checked, (comment or "").strip() or None,
                  correction(corrected_input, generated and generated.input),
                  correction(corrected_output, generated and generated.output))
