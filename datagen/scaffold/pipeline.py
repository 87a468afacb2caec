"""`datagen new NAME`: a new pipeline's files, filled in from a signature string, that run as they are.

From "passage -> question, answer" it writes the signature (signatures/NAME.py), the program (programs/NAME.py),
its metrics (metrics/NAME.py), a dev set drawn from the workspace's sample corpus (data/NAME/dev.jsonl) and an
offline test (tests/test_NAME.py). Everything is checked before anything is written, and nothing is overwritten.
"""

import json
import keyword
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from string import Template

import dspy

from datagen.dataset import sample_devset
from datagen.errors import DatagenError
from datagen.workspace import find_pipelines, load_config
from datagen.workspace.pipelines import is_builtin

DEFAULT_SIGNATURE = "passage -> output"
SAMPLE_CORPUS = Path("data") / "samples"
DEV_ITEMS = 6  # enough for evaluate, and for optimize's train and val splits, while staying cheap to run
# `samples` is the program's own output beside the fields; the others are names the generated code needs in
# scope (`str` in the signature's annotations, `self`, `super` and `dspy` in the constructor, whose parameters
# the extra inputs become).
_RESERVED_FIELDS = {"samples", "self", "super", "dspy", "str"}


@dataclass(frozen=True)
class Fields:
    """A signature's field names: the first input takes the chunk, the others are pipeline options."""

    inputs: list[str]
    outputs: list[str]


def parse_signature(text: str) -> Fields:
    """The field names of a signature string, "in1, in2 -> out1, out2"; refused in one line naming it when
    malformed."""
    left, arrow, right = text.partition("->")
    inputs, outputs = _names(left), _names(right)
    if not arrow or "->" in right or not inputs or not outputs:
        raise DatagenError(f"--signature {text!r}: expected \"inputs -> outputs\", "
                           "e.g. \"passage -> question, answer\"")
    names = inputs + outputs
    for name in names:
        problem = _field_problem(name)
        if problem:
            raise DatagenError(f"--signature {text!r}: field {name!r} {problem}")
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise DatagenError(f"--signature {text!r}: field {duplicate!r} appears twice")
    return Fields(inputs, outputs)


def _names(side: str) -> list[str]:
    return [name.strip() for name in side.split(",")] if side.strip() else []


def _is_plain_identifier(name: str) -> bool:
    """Whether `name` can name a module or a field: a Python identifier, not a keyword, no leading underscore."""
    return name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")


def _field_problem(name: str) -> str | None:
    """Why `name` cannot be a field, or None."""
    if not _is_plain_identifier(name):
        return "is not a plain Python identifier (letters, digits and underscores, no leading underscore)"
    # A field named like a Signature or Prediction attribute breaks the class or hides the value (`result.items`).
    if name in _RESERVED_FIELDS or hasattr(dspy.Signature, name) or hasattr(dspy.Prediction, name):
        return "is a name DSPy or datagen reserves"
    return None


def check_name(name: str, workspace: Path) -> None:
    """A pipeline name must be importable as a module and listed as a pipeline (no leading underscore), and new.

    Args:
        name: The new pipeline's name.
        workspace: The workspace it goes in (its pipelines and the built-in ones are taken).

    Raises:
        DatagenError: The name is not a plain identifier, or a pipeline of that name exists.
    """
    if not _is_plain_identifier(name):
        raise DatagenError(f"pipeline name {name!r}: must be a Python identifier (letters, digits and "
                           "underscores, not starting with a digit or an underscore)")
    found = find_pipelines(workspace)
    if name in found and is_builtin(found[name]) and not is_builtin(workspace):
        raise DatagenError(f"pipeline {name!r} is a built-in pipeline: pick another name (to customize it, copy "
                           f"its programs/{name}.py into this workspace)")
    if name in found:
        raise DatagenError(f"pipeline {name!r} already exists (programs/{name}.py)")


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _prose(names: list[str]) -> str:
    """Field names as a phrase: "the question and the answer"."""
    words = [f"the {name.replace('_', ' ')}" for name in names]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _instruction(fields: Fields) -> str:
    """A placeholder instruction that reads as a real one, for the user to rewrite."""
    source = _prose(fields.inputs[:1])
    extra = f", taking {_prose(fields.inputs[1:])} into account" if fields.inputs[1:] else ""
    them = "it" if len(fields.outputs) == 1 else "them"
    text = (f"From {source}{extra}, write {_prose(fields.outputs)}.\n\n"
            f"Base {them} on {source} alone: add no facts that it does not contain. Write clear, complete "
            f"sentences that make sense to a reader who has not seen {source}.")
    # Wrapped to the project's line length, continuation lines indented as the docstring's first line.
    return "\n\n    ".join(textwrap.fill(paragraph, 112, subsequent_indent="    ")
                           for paragraph in text.split("\n\n"))


SIGNATURE = Template('''\
"""The signature of the $name pipeline.

Its fields are what the model reads and writes; its docstring is the instruction the model is given. Rewrite the
docstring to say what you want from each passage (`datagen optimize` can tune it further).
"""

import dspy


class $signature_class(dspy.Signature):
    """$instruction"""

$fields
''')

PROGRAM = Template('''\
"""The $name pipeline: each chunk of the corpus becomes a training sample.

What the model is asked to do is the docstring of the signature in signatures/$name.py. Run it with:

    datagen generate $name --input data/samples --out out/$name
"""

import dspy

from datagen import Sample
from datagen.text.degenerate import degenerate
from signatures.$name import $signature_class


class $program_class(dspy.Module):
    def __init__(self$option_params):
        super().__init__()
$option_lines        self.predict = dspy.Predict($signature_class)

    def forward(self, chunk: str) -> dspy.Prediction:
        result = self.predict($call_args)
        # An output that is no text worth training on makes no sample: empty, a placeholder (`{$first_output}`), a
        # JSON object, gibberish, or a copy of the passage or of a sentence of it. `datagen generate` counts the
        # drops by reason. Leave `source` out for a field that may quote the passage; add `min_length_ratio=0.55`
        # (datagen.text.degenerate.REWRITE_MIN_LENGTH_RATIO) for one that must carry all of it, as a rewrite does.
        for field in $output_names:
            if reason := degenerate(result[field], source=chunk, field=field):
                dropped = [{"reason": reason, field: result[field]}]
                return dspy.Prediction($output_items, samples=[], dropped=dropped)
        # The training pair: `input` is what the fine-tuned model will be given, `output` what it should answer.
        # Any output field, or `chunk` (the passage itself), may go on either side: swap them to train the
        # reverse task, or return several samples per chunk.
        sample = Sample(input=$sample_input, output=$sample_output)
        return dspy.Prediction($output_items, samples=[sample])
''')

METRICS = Template('''\
"""The $name pipeline's metrics, and how much each counts in its composite.

metrics/style_clone.py has a fuller suite. Score the dev set with every metric, or tune the program against the
composite, with:

    datagen evaluate $name --dev data/$name/dev.jsonl
    datagen optimize $name --dev data/$name/dev.jsonl

and score a model trained on a run's pairs, on the run's held-out test split, with the model metrics:

    datagen eval-model RUN --model openai/MY-FINE-TUNE --api-base http://localhost:8000/v1
"""

from datagen import DiversityBar
from datagen.samples import Sample
from datagen.metrics.answers import AnswerChrF, AnswerF1, AnswerNovelty
from datagen.metrics.base import Score
from datagen.metrics.judges import InstructionsJudge
from signatures.$name import $signature_class


def _normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


class DistinctOutput:
    """Offline (no LLM): the output says something, and not merely what the input or the passage already said."""

    name, kind = "distinct_output", "offline"

    def __call__(self, chunk: str, sample: Sample) -> Score:
        output = _normalized(sample.output)
        if not output:
            return Score(0.0, "the output is empty")
        for side, text in (("input", sample.input), ("passage", chunk)):
            if output == _normalized(text):
                return Score(0.0, f"the output is a copy of the {side}")
        return Score(1.0, "the output is non-empty and not a copy of the input or the passage")


METRICS = {
    # The judge reads the signature's docstring, so it follows the instructions as they are edited.
    "follows_instructions": lambda ctx: InstructionsJudge(ctx.judge, $signature_class.instructions),
    "distinct_output": lambda ctx: DistinctOutput(),
}
WEIGHTS = {"follows_instructions": 2.0, "distinct_output": 1.0}
THRESHOLD = 0.6
# The diversity bar `datagen evaluate` and `datagen optimize` report (docs/quality.md): the inputs must not collapse
# to a formula, an opening (first three words) on a tenth of them or more, and 3 or more.
DIVERSITY_BAR = DiversityBar(opening_share=0.1, fields=("input",))
# What a person reviewing a sample in `datagen view` rates from 1 to 5 (what a 5 means), named after the metric that
# measures it, so that `datagen judge-check RUN --human` sets the metric against the ratings.
CRITERIA = {
    "follows_instructions": "The output does what the instructions ask of the passage.",
}
# The model metrics (`datagen eval-model`): a trained model's answer to a held-out input, against the reference
# output: its closeness (chrF, token F1) and, as a gate, new wording (an answer that returns its input did no work).
# metrics/style_clone.py and metrics/factual_qa.py show judged and task-specific ones (datagen.metrics.answers).
MODEL_METRICS = {
    "chrf": lambda ctx: AnswerChrF(),
    "answer_f1": lambda ctx: AnswerF1(),
    "novelty": lambda ctx: AnswerNovelty(),
}
MODEL_WEIGHTS = {"chrf": 1.0, "answer_f1": 1.0, "novelty": 0.25}
''')

TEST = Template('''\
"""The $name pipeline, offline: a stand-in model answers every output field (no network, model or key)."""

import re
from pathlib import Path

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage

from datagen.dataset.devset import read_devset
from datagen.workspace.pipelines import load_program

WORKSPACE = Path(__file__).resolve().parents[1]


class EchoEngine:
    """A DSPy custom engine: answers each output field the prompt names with `answer(field)` (a short fixed text
    by default), in the `[[ ## field ## ]]` format of DSPy's ChatAdapter."""

    def __init__(self, answer=lambda field: f"an example {field}"):
        self.answer = answer

    def complete(self, request) -> Response:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
        asked = system.partition("Your output fields are:")[2].partition("All interactions")[0]
        fields = re.findall(r"^\\d+\\. `(\\w+)`", asked, re.M)
        values = "".join(f"[[ ## {field} ## ]]\\n{self.answer(field)}\\n\\n" for field in fields)
        text = values + "[[ ## completed ## ]]"
        return Response(id=None, model="echo", message=Message.assistant([TextPart(text)]), finish_reason="stop",
                        usage=Usage(input_tokens=0, output_tokens=len(text.split())))


def run_dev_set(engine: EchoEngine) -> list:
    """The program's prediction for each dev item, the stand-in model answering."""
    program = load_program("$name", WORKSPACE)
    lm = dspy.LM("local/echo", engine=engine, cache=False)
    with dspy.context(lm=lm, adapter=dspy.ChatAdapter()):
        return [program(chunk=item.chunk.text) for item in read_devset(WORKSPACE / "data" / "$name" / "dev.jsonl")]


def test_${name}_makes_samples_from_every_dev_item():
    for prediction in run_dev_set(EchoEngine()):
        assert prediction.samples, "the program returned no samples"
        for sample in prediction.samples:
            assert sample.input.strip() and sample.output.strip()


def test_${name}_drops_a_placeholder_answer():
    for prediction in run_dev_set(EchoEngine(lambda field: "{" + field + "}")):
        assert not prediction.samples and prediction.dropped[0]["reason"] == "placeholder"
''')


def _field_lines(fields: Fields) -> str:
    first, *options = fields.inputs
    lines = [f'    {first}: str = dspy.InputField(desc="a passage of the source text")']
    lines += [f"    {name}: str = dspy.InputField()" for name in options]
    lines += [f"    {name}: str = dspy.OutputField()" for name in fields.outputs]
    return "\n".join(lines)


def _option_lines(options: list[str]) -> str:
    """Inputs beyond the first become constructor arguments, i.e. pipeline options (kept in a dict, so that a
    field named like a Module attribute, `predict` say, cannot clobber it)."""
    if not options:
        return ""
    items = ", ".join(f'"{option}": {option}' for option in options)
    return (f"        # Inputs beyond the passage are the same for every chunk: set them with --option, e.g.\n"
            f"        # datagen generate ... --option {options[0]}=...\n"
            f"        self.options = {{{items}}}\n")


def _sample_sides(fields: Fields) -> tuple[str, str]:
    """One output: passage -> output. Several: first output -> last output (question -> answer)."""
    outputs = [f"result.{name}" for name in fields.outputs]
    return ("chunk", outputs[0]) if len(outputs) == 1 else (outputs[0], outputs[-1])


def render(name: str, fields: Fields) -> dict[Path, str]:
    """The code files of pipeline `name`, by path relative to the workspace."""
    options = fields.inputs[1:]
    sample_input, sample_output = _sample_sides(fields)
    values = {
        "name": name, "signature_class": f"{_camel(name)}Signature", "program_class": f"{_camel(name)}Program",
        "instruction": _instruction(fields), "fields": _field_lines(fields),
        "option_params": "".join(f', {option}: str = ""' for option in options),
        "option_lines": _option_lines(options),
        "call_args": f"{fields.inputs[0]}=chunk" + (", **self.options" if options else ""),
        "sample_input": sample_input, "sample_output": sample_output,
        "output_items": ", ".join(f"{output}=result.{output}" for output in fields.outputs),
        "first_output": fields.outputs[0], "output_names": repr(tuple(fields.outputs)).replace("'", '"'),
    }
    return {Path("signatures", f"{name}.py"): SIGNATURE.substitute(values),
            Path("programs", f"{name}.py"): PROGRAM.substitute(values),
            Path("metrics", f"{name}.py"): METRICS.substitute(values),
            Path("tests", f"test_{name}.py"): TEST.substitute(values)}


def dev_set(workspace: Path) -> str:
    """A few chunks of the workspace's sample corpus as dev set JSONL, drawn as `datagen devset` draws them."""
    corpus = workspace / SAMPLE_CORPUS
    if not corpus.is_dir():
        raise DatagenError(f"{corpus}: no sample corpus to draw the dev set from (put a few .txt or .md files there)")
    chunking = load_config(workspace).chunking
    records = sample_devset([corpus], DEV_ITEMS, max_tokens=chunking.max_tokens, language=chunking.language)
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def dev_path(name: str) -> Path:
    """Where pipeline `name`'s dev set goes, relative to the workspace."""
    return Path("data", name, "dev.jsonl")


def refuse_existing(folder: Path, files: Iterable[Path], *, name_folder: bool = False) -> None:
    """Refuse to write over anything: the first of `files` (relative to `folder`) that exists is named.

    Args:
        folder: The folder the files go in.
        files: Their paths relative to `folder`.
        name_folder: Name the file with `folder` in front (`datagen init DIR`, whose folder the user chose), not
            relative to it (`datagen new`, in the workspace the user is in).

    Raises:
        DatagenError: One of the files exists (nothing has been written).
    """
    for relative in files:
        if (folder / relative).exists():
            shown = folder / relative if name_folder else relative
            raise DatagenError(f"{shown} already exists: refusing to overwrite it (nothing was written)")


def write_all(workspace: Path, files: dict[Path, str]) -> None:
    """Create every file, none overwritten; on a failure the ones already made are removed, so the command can
    simply be run again."""
    written = []
    try:
        for relative, text in files.items():
            path = workspace / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8", newline="\n") as sink:
                written.append(path)
                sink.write(text)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise DatagenError(f"{exc.filename or workspace}: cannot write ({exc.strerror or exc}); nothing was "
                           "written") from None


def scaffold(workspace: Path, name: str, signature: str | None = None) -> list[Path]:
    """Write the files of a new pipeline (what `datagen new` does); everything is checked before anything is
    written.

    Args:
        workspace: The workspace the pipeline goes in; its sample corpus (data/samples/) gives the dev set.
        name: The pipeline's name (a plain Python identifier, not taken).
        signature: Its fields, "inputs -> outputs" (default DEFAULT_SIGNATURE).

    Returns:
        The paths written: the signature, program, metrics and test modules, and the dev set.

    Raises:
        DatagenError: A bad or taken name, a bad signature, no sample corpus, a file that exists already, or one
            that cannot be written; nothing is left written then.
    """
    check_name(name, workspace)
    files = render(name, parse_signature(signature or DEFAULT_SIGNATURE))
    dev = dev_path(name)
    refuse_existing(workspace, [*files, dev])
    files[dev] = dev_set(workspace)
    write_all(workspace, files)
    return [workspace / relative for relative in files]
