"""A pipeline's diversity bar: how little diversity its samples may show, field by field, before a person must
look (docs/quality.md, "The diversity bar").

A pipeline declares it in its metrics module (`DIVERSITY_BAR = DiversityBar(...)` in metrics/PIPELINE.py), and
`[metrics.PIPELINE.diversity_bar]` in datagen.toml overrides it key by key. `datagen evaluate` and `datagen
optimize` check it on the samples a program made from the dev set, with the figures of
datagen.dataset.quality.diversity: a program whose rephrases all open with one formula is seen before it makes
100,000 of them. The bar is reported, never enforced: nothing fails for it.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from datagen.dataset.quality.diversity import OPENING_BAR, OPENING_MIN_COUNT, Diversity, formulas
from datagen.errors import ConfigError

# The sample fields a bar may name.
FIELDS = ("input", "output")


def _share(name: str, value, low_open: bool) -> None:
    """Raise ConfigError unless `value` is None or a number in (0, 1] (`low_open`) or [0, 1]."""
    if value is None:
        return
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not number or not (0 < value <= 1 if low_open else 0 <= value <= 1):
        raise ConfigError(f"DiversityBar {name}: expected a number in {'(0' if low_open else '[0'}, 1] or None, "
                          f"got {value!r}")


@dataclass(frozen=True)
class BarVerdict:
    """What the bar said of a program's samples.

    Attributes:
        met: True when no barred field broke it, False when one did, None when no barred field had a text to
            measure (every dev item failed, or the field was empty).
        broken: one plain sentence per breach, naming the field and the figure, e.g. "input: 'here is a' opens
            85% of the 20 predictions (bar 10%)"; () when met.
    """

    met: bool | None
    broken: tuple[str, ...]


@dataclass(frozen=True)
class DiversityBar:
    """The least diversity a pipeline's samples must show, per field.

    Attributes:
        opening_share: an opening (a text's first three words, as `datagen.dataset.quality.openings` counts them)
            beginning this share of a field's texts or more, and OPENING_MIN_COUNT (3) of them or more, breaks
            the bar: a template took over. A number in (0, 1], or None for no bar on openings; default
            OPENING_BAR (0.1), the template-collapse bar of `status` and the card.
        distinct_2: a field's distinct-2 (distinct word pairs over all word pairs) under this breaks the bar: a
            number in [0, 1], or None (the default) for no bar on it. distinct-2 falls as more text is measured:
            a figure for a dev set of 20 items is not one for a run.
        fields: the sample fields barred, among "input" and "output"; default ("input",). Empty: no bar.

    Raises:
        ConfigError: a share outside its range (or not a number), or a field other than input and output.
    """

    opening_share: float | None = OPENING_BAR
    distinct_2: float | None = None
    fields: tuple[str, ...] = ("input",)

    def __post_init__(self):
        _share("opening_share", self.opening_share, low_open=True)
        _share("distinct_2", self.distinct_2, low_open=False)
        if isinstance(self.fields, str) or any(name not in FIELDS for name in self.fields):
            raise ConfigError(f"DiversityBar fields: expected a list of {' and '.join(FIELDS)}, got {self.fields!r}")
        object.__setattr__(self, "fields", tuple(dict.fromkeys(self.fields)))  # a list given, repeats dropped

    @property
    def empty(self) -> bool:
        """Whether the bar holds nothing to anything: no field, or neither an opening share nor a distinct-2."""
        return not self.fields or (self.opening_share is None and self.distinct_2 is None)

    def describe(self) -> str:
        """The bar in words, e.g. "input: no opening on 10% or more of the texts, 3 at least"; "none" for an empty
        one."""
        parts = []
        if self.opening_share is not None:
            parts.append(f"no opening on {self.opening_share:.0%} or more of the texts, {OPENING_MIN_COUNT} at least")
        if self.distinct_2 is not None:
            parts.append(f"distinct-2 {self.distinct_2:.3f} or more")
        if self.empty:
            return "none"
        return "; ".join(f"{name}: {', '.join(parts)}" for name in self.fields)

    def check(self, figures: Mapping[str, Diversity], noun: str = "texts") -> BarVerdict:
        """The bar applied to each barred field's figures.

        Args:
            figures: {field: its Diversity}; a barred field missing from it, or without a text, is not measured.
            noun: what the texts are called in the sentences, plural (e.g. "predictions"); default "texts".

        Returns:
            The `BarVerdict`: met, broken (with a sentence per breach), or None when nothing barred was measured.
        """
        measured = [(name, figures[name]) for name in self.fields if name in figures and figures[name].texts]
        broken = []
        for name, own in measured:
            if self.opening_share is not None:
                broken += [f"{name}: '{o.text}' opens {o.share:.0%} of the {own.texts} {noun} (bar "
                           f"{self.opening_share:.0%})" for o in formulas(own, self.opening_share)]
            if self.distinct_2 is not None and own.distinct_2 is not None and own.distinct_2 < self.distinct_2:
                broken.append(f"{name}: distinct-2 {own.distinct_2:.3f} over the {own.texts} {noun}, under the "
                              f"bar's {self.distinct_2:.3f}")
        return BarVerdict(not broken if measured else None, tuple(broken))
