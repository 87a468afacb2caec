"""Dataset-level quality on the command line: the screening flags `export` and `push` take, and `datagen quality`,
which measures a run's near-duplicates, contamination and diversity and shows them (docs/quality.md)."""

from pathlib import Path
from typing import Annotated

import typer

from datagen.cli.output import err, plural, say
from datagen.errors import InputError

NearDuplicates = Annotated[list[str] | None, typer.Option(
    "--near-duplicates", help="Leave out a sample whose input or output nearly repeats an earlier one's, at KIND=SIM: "
                              "lexical (character 5-gram Jaccard, default lexical=0.6) or semantic (embedding cosine, "
                              "e.g. semantic=0.9; embeds every sample) (repeatable).")]
KeepNearDuplicates = Annotated[bool, typer.Option("--keep-near-duplicates", help="Keep near-duplicate samples.")]
KeepContaminated = Annotated[bool, typer.Option(
    "--keep-contaminated", help="Keep samples that share an n-gram with the dev set, the held-out split or a "
                                "--protect file.")]
Protect = Annotated[list[Path] | None, typer.Option(
    "--protect", help="An evaluation file no training sample may share an n-gram with (JSONL, JSON or text; "
                      "repeatable).")]
Ngram = Annotated[int, typer.Option("--ngram", help="The contamination test's n-gram length in words, 5 to 50.")]


def screen_from(near_duplicates: list[str] | None, keep_near_duplicates: bool, keep_contaminated: bool,
                protect: list[Path] | None, ngram: int):
    """The flags as a `datagen.dataset.screening.Screen`.

    Raises:
        InputError: a KIND=SIM that is not one (naming it), --near-duplicates with --keep-near-duplicates, an n
            outside 5 to 50, or a --protect file that is not there.
    """
    from datagen.dataset.quality.contamination import N_RANGE
    from datagen.dataset.screening import DEFAULT_THRESHOLDS, Screen

    if near_duplicates and keep_near_duplicates:
        raise InputError("--near-duplicates sets what to leave out and --keep-near-duplicates keeps them all: give "
                         "one of the two")
    thresholds: dict[str, float] = {}
    for given in near_duplicates or []:
        kind, _, value = given.partition("=")
        try:
            thresholds[kind.strip()] = float(value)
        except ValueError:
            raise InputError(f"--near-duplicates {given!r}: give KIND=SIMILARITY, e.g. lexical=0.6 or "
                             "semantic=0.9") from None
    if not N_RANGE[0] <= ngram <= N_RANGE[1]:
        raise InputError(f"--ngram {ngram}: give an n-gram length of {N_RANGE[0]} to {N_RANGE[1]} words")
    for path in protect or []:
        if not path.is_file():
            raise InputError(f"--protect {path}: {'a folder: name its files' if path.is_dir() else 'no such file'}")
    screen = Screen(None if keep_near_duplicates else thresholds or dict(DEFAULT_THRESHOLDS),
                    contaminated=not keep_contaminated, ngram=ngram, protect=tuple(protect) if protect else None)
    screen.check()
    return screen


def left_out_line(counts: dict[str, int]) -> str:
    """"3 near-duplicates and 1 contaminated left out" ("" when none were)."""
    parts = [plural(n, reason) if reason == "near-duplicate" else f"{n} {reason}" for reason, n in counts.items()]
    return f"{' and '.join(parts)} left out" if parts else ""


def quality(
    run_dir: Annotated[Path, typer.Argument(help="A run folder made by `datagen generate` (holds run.db).")],
    near_duplicates: NearDuplicates = None,
    protect: Protect = None,
    ngram: Ngram = 13,
    show: Annotated[int, typer.Option("--show", min=0, help="How many flagged samples of each kind to list.")] = 10,
) -> None:
    """Measure a run's dataset-level quality and show it: near-duplicate samples (each with the one it repeats),
    samples sharing n-grams with protected text, and each field's diversity beside the source chunks'. Offline,
    recorded in the run store; `export` leaves the flagged samples out."""
    from datagen.dataset.screening import measure
    from datagen.store import RunStore

    screen = screen_from(near_duplicates, False, False, protect, ngram)
    with RunStore.existing(run_dir) as store:
        if not store.counts()["done"]:
            raise InputError(f"{run_dir}: no finished chunks to measure yet (run datagen generate)")
        result = measure(store, screen)
    say(f"run {run_dir}: {plural(len(result.keys), 'sample')} "
        f"({'measured now' if result.fresh else 'as recorded for these samples'})")
    for line in quality_lines(result, screen.near_duplicates, show):
        say(line)


def quality_lines(result, thresholds, show: int = 10) -> list[str]:
    """A run's quality (`datagen.dataset.screening.RunQuality`) as lines: the near-duplicates at `thresholds`
    and the contaminated samples (the first `show` of each named), then each field's diversity."""
    from collections import Counter

    from datagen.dataset.card import diversity_table
    from datagen.dataset.screening import shared_detail, source_kind

    groups = result.groups(thresholds)
    bars = ", ".join(f"{kind} >= {bar:g}" for kind, bar in thresholds.items())
    repeating = len({row[0] for row in groups})
    lines = [f"near-duplicates ({bars}): {plural(repeating, 'sample')} repeat{'s' * (repeating == 1)} an earlier one"]
    lines += [f"  {_key(flagged)} {name} nearly repeats {_key(of)} ({kind}, {similarity:.2f})"
              for flagged, of, name, kind, similarity in groups[:show]]
    contaminated, settings = result.contamination, result.settings
    files = ", ".join(settings.get("files", ())) or "none"
    lines.append(f"protected: {plural(settings.get('protected', 0), 'text')} of the compiled program's dev set and demos "
                 f"and of the files ({files}), {plural(settings.get('held_out', 0), 'held-out chunk')}")
    kinds = Counter(source_kind(source) for key, source in {row[0]: row[2] for row in contaminated}.items())
    by_kind = f" ({', '.join(f'{kind}: {n}' for kind, n in kinds.items())})" if kinds else ""
    lines.append(f"contaminated ({settings['ngram']}-grams shared with protected text): "
                 f"{plural(len({row[0] for row in contaminated}), 'sample')}{by_kind}")
    lines += [f"  {_key(key)} {shared_detail(name, shared, result.settings['ngram'], source, share)}"
              for key, name, source, shared, share in contaminated[:show]]
    table = diversity_table(result.diversity)
    if table:
        lines += ["diversity (samples beside their source chunks):",
                  *(f"  {line}" for line in table[2:] if line and not line.startswith("|---"))]
    return lines


def _key(key: tuple[str, int]) -> str:
    return f"{key[0]}#{key[1]}"


def say_left_out(counts: dict[str, int]) -> None:
    """Say on stderr what an export's screen left out, and how to keep it."""
    if counts:
        say(f"screened: {left_out_line(counts)} (datagen quality RUN names each, with the sample it repeats or the "
            "text it shares: the dev set, the held-out split or a protected file; keep them with "
            "--keep-near-duplicates, --keep-contaminated)", to=err)
