"""The docs run as written, and the references cover the CLI and the config.

Every line of a ```bash block in docs/*.md is a `datagen` command; each document's commands run in order, as
written, in a fresh copy of the workspace whose datagen.toml points the task, judge and prompt roles at a fake
OpenAI-compatible server (so the docs carry no test flags). A ```python block whose first line is
`# PATH` (or `# add to the end of PATH`) is an edit the reader makes: it is applied at its place in the
sequence. Commands that need something a test cannot provide belong in ```text or ```toml blocks.

docs/cli.md must name every command and option of the typer app (and list no other), docs/config.md every field
of the config models, and every ```toml block in the docs must be a valid datagen.toml.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main

from datagen.cli import app
from datagen.workspace.config import (ROLES, ChunkingSettings, Config, DiversityBarSettings, MetricSettings,
                                     ModelSettings)

from .conftest import ROOT
from .fakes import FakeOpenAIServer, plain

DOCS = ROOT / "docs"
DATAGEN = Path(sys.executable).with_name("datagen")
FENCE = re.compile(r"^```(\S*)\s*$")
EDIT = re.compile(r"^# (add to the end of )?((?:signatures|programs|metrics|data)/[\w./-]+)\s*$")


@dataclass(frozen=True)
class Step:
    doc: str
    line: int
    argv: list[str] | None = None  # a command to run
    path: str | None = None  # or a file to write ...
    text: str = ""
    append: bool = False  # ... or to add to

    def __str__(self) -> str:
        what = shlex.join(self.argv) if self.argv else f"{'append to' if self.append else 'write'} {self.path}"
        return f"{self.doc}:{self.line}: {what}"


def blocks(path: Path) -> list[tuple[str, int, list[str]]]:
    """The fenced blocks of a Markdown file: (language, line number of the first content line, lines)."""
    found, current = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
        if current is None and fence:
            current = (fence.group(1), number + 1, [])
        elif current is not None and line.startswith("```"):
            found.append(current)
            current = None
        elif current is not None:
            current[2].append(line)
    assert current is None, f"{path.name}: a code block is not closed"
    return found


def steps(path: Path) -> list[Step]:
    """What a reader of the document runs and edits, in order."""
    result = []
    for language, first, lines in blocks(path):
        if language == "bash":
            joined, start = [], None
            for number, line in enumerate(lines, first):
                start = start or number
                joined.append(line.removesuffix("\\"))
                if line.endswith("\\"):  # continued on the next line
                    continue
                argv = shlex.split(" ".join(joined), comments=True)
                if argv:
                    assert argv[0] == "datagen", (f"{path.name}:{start}: only datagen commands belong in bash blocks "
                                                  f"(put other commands in a text block): {' '.join(joined)}")
                    result.append(Step(path.name, start, argv=argv))
                joined, start = [], None
        elif language == "python" and lines and (edit := EDIT.match(lines[0])):
            result.append(Step(path.name, first, path=edit.group(2), text="\n".join(lines[1:]) + "\n",
                               append=bool(edit.group(1))))
    return result


def documents_with_commands() -> list[str]:
    return [doc.name for doc in sorted(DOCS.glob("*.md")) if any(step.argv for step in steps(doc))]


# --- the fake model's answers --------------------------------------------------------------------------------

def about(passage: str, words: int = 6) -> str:
    return " ".join(plain(passage).split()[:words])


def instruction(passage: str) -> str:
    """Like the tutorial's first version: some requests lean on the passage (the `standalone` metric's catch)."""
    return f"{'According to the passage, why' if len(passage) % 2 else 'Explain why'} {about(passage, 8)}?"


ANSWERS = {
    # the tutorial's instruct pipeline
    "instruction": instruction,
    "response": lambda passage: "In short: " + plain(passage)[:400],
    # factual_qa (its checks pass every pair) and the scaffolded `qa`
    "questions": lambda passage: json.dumps([f"What does it say about {about(passage)}?",
                                             f"Why does it mention {about(passage, 3)}?"]),
    "question": lambda passage: f"What does it say about {about(passage)}?",
    "answer": lambda passage: "It says " + plain(passage)[:300],
    "answerable": lambda _: "true",
    "accurate": lambda _: "true",
    "trivial": lambda _: "false",
    # the judges
    "rating": lambda _: "4",
    "closer": lambda _: "A",
}


@pytest.fixture
def docs_workspace(workspace):
    with FakeOpenAIServer(by_field=ANSWERS) as server:
        (workspace / "datagen.toml").write_text("".join(
            f'[models.{role}]\nmodel = "openai/fake-{role}"\napi_base = "{server.url}"\n\n' for role in ROLES))
        yield workspace, server


def run_step(step: Step, workspace: Path) -> subprocess.CompletedProcess | None:
    if step.path:
        target = workspace / step.path
        assert not step.append or target.is_file(), f"{step}: nothing to add to"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("a" if step.append else "w", encoding="utf-8") as sink:
            sink.write(("\n\n" if step.append else "") + step.text)
        return None
    # The reader's shell: no DATAGEN_* settings of this machine, no terminal (optimize would ask to start).
    env = {key: value for key, value in os.environ.items() if not key.startswith("DATAGEN_")}
    env["DSPY_CACHEDIR"] = str(workspace / ".dspy_cache")
    return subprocess.run([str(DATAGEN), *step.argv[1:]], cwd=workspace, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("doc", documents_with_commands())
def test_every_command_in_the_docs_runs_as_written(doc, docs_workspace):
    workspace, server = docs_workspace
    failed, outputs = [], {}
    started = time.monotonic()
    for step in steps(DOCS / doc):
        result = run_step(step, workspace)
        if result is None:
            continue
        outputs[shlex.join(step.argv)] = result.stdout + result.stderr
        if result.returncode != 0:  # carry on: one report of every command that fails
            tail = "\n    ".join((result.stderr.strip() or result.stdout.strip()).splitlines()[-6:])
            failed.append(f"{step}\n    exit {result.returncode}: {tail}")
    assert not failed, f"{len(failed)} command(s) of {doc} failed:\n" + "\n".join(failed)
    CHECKS.get(doc, lambda *_: None)(workspace, server, outputs)
    print(f"{doc}: {len(outputs)} commands in {time.monotonic() - started:.0f}s")


def said(outputs: dict[str, str], command: str) -> str:
    """What the first command starting with `command` printed (stdout and stderr)."""
    return next(text for line, text in outputs.items() if line.startswith(command))


def check_tutorial(workspace: Path, server: FakeOpenAIServer, outputs: dict) -> None:
    for path in ["out/instruct/sharegpt.jsonl", "out/instruct-v2/sharegpt.jsonl", "evals/instruct-v2/report.html",
                 "compiled/instruct/bootstrap.json", "compiled/instruct/search.json", "studies/instruct.db",
                 "out/instruct-full/README.md"]:
        assert (workspace / path).exists(), path
    # The edited instructions are what the model was sent.
    assert any("The reader has never seen the passage" in message["content"]
               for request in server.requests for message in request["messages"])
    # The dev set came from the corpus, and the metric the tutorial adds scored it and caught the leaning requests.
    dev = [json.loads(line) for line in (workspace / "data/instruct/dev.jsonl").read_text().splitlines()]
    assert len(dev) == 16 and all("factual_qa/corpus" in item["source"] for item in dev)
    scores = json.loads((workspace / "evals/instruct-v2/eval.json").read_text())["metrics"]
    assert 0 < scores["standalone"]["mean"] < 1
    # The exported dataset kept out every pair that refers to the passage, and kept the others.
    exported = [json.loads(line) for line in (workspace / "out/instruct-full/openai.jsonl").read_text().splitlines()]
    assert exported and not any("the passage" in m["content"].lower() for e in exported for m in e["messages"])
    assert "below --min-score kept out" in said(outputs, "datagen generate instruct --input data/factual_qa/corpus "
                                                         "--out out/instruct-v2")
    assert "standalone 0.000" in said(outputs, "datagen inspect out/instruct-v2 --worst")
    assert "2 trials (2 this run)" in said(outputs, "datagen optimize instruct --dev data/instruct/dev.jsonl --trials")


def check_cli(workspace: Path, server: FakeOpenAIServer, outputs: dict) -> None:
    for path in ["signatures/qa.py", "chunks.jsonl", "out/demo/hf/README.md", "out/qa/sharegpt.jsonl",
                 "qa-openai.jsonl", "dev-qa.jsonl", "evals/qa/eval.json", "compiled/qa/bootstrap.json"]:
        assert (workspace / path).exists(), path
    assert "qa" in said(outputs, "datagen pipelines").split()
    assert "=== LM call 1" in said(outputs, "datagen inspect out/demo 9db6e8e0cdc6840a --prompts")
    assert "style_pairwise" in said(outputs, "datagen judge-check out/demo")
    validity = json.loads((workspace / "validity.json").read_text())["metrics"]
    assert validity["composite (offline)"]["true_vs_copy"]["accuracy"] == 1.0


CHECKS = {"tutorial.md": check_tutorial, "cli.md": check_cli}


def test_the_tutorial_is_run():
    """Guards the parser: the tutorial's commands are found (a broken fence would silently skip them)."""
    assert "tutorial.md" in documents_with_commands()
    commands = [step.argv[1] for step in steps(DOCS / "tutorial.md") if step.argv]
    for command in ("new", "generate", "inspect", "devset", "evaluate", "optimize", "compiled", "export"):
        assert command in commands


# --- the references cover the CLI and the config -------------------------------------------------------------

def cli_commands() -> dict[str, list]:
    """'generate', 'compiled show', ...: each command of the typer app with its parameters."""
    found = {}

    def walk(group, prefix):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                walk(command, [*prefix, name])
            else:
                found[" ".join([*prefix, name])] = command.params

    walk(typer.main.get_command(app), [])
    return found


def sections(text: str, heading: str) -> dict[str, str]:
    """`## PREFIX...` sections of a Markdown text by their heading's title, each up to the next `## `."""
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {title.strip(): body for title, _, body in (part.partition("\n") for part in parts)
            if title.startswith(heading)}


def tables(section: str, first_column: str) -> dict[str, str]:
    """The rows of the section's tables headed `| FIRST_COLUMN |`, by their first cell (backquotes dropped)."""
    rows, heading = {}, None
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]] if line.startswith("|") else None
        if cells is None:
            heading = None
        elif heading is None:
            heading = cells[0]
        elif heading == first_column and not set(cells[0]) <= set("-:"):
            rows[cells[0]] = line
    return rows


def mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_cli_reference_names_every_command_and_option():
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    documented = sections(text, "datagen ")
    missing = []
    for command, params in cli_commands().items():
        section = documented.get(f"datagen {command}")
        if section is None:
            missing.append(f"datagen {command}: no '## datagen {command}' section")
            continue
        listed = {option for key in tables(section, "option") for option in re.findall(r"`(-[-\w]+)`", key)}
        for param in params:
            for option in param.opts + param.secondary_opts if param.param_type_name == "option" else []:
                if option not in listed:
                    missing.append(f"datagen {command}: {option} (a row of its options table)")
    for option in typer.main.get_command(app).params:
        missing += [f"datagen: global {opt}" for opt in option.opts if not mentions(text, opt)]
    assert not missing, "docs/cli.md does not document:\n" + "\n".join(missing)


def test_cli_reference_names_no_command_or_option_that_does_not_exist():
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = cli_commands()
    wrong = []
    for title, section in sections(text, "datagen ").items():
        command = title.removeprefix("datagen ")
        if command not in commands:
            wrong.append(f"{title}: no such command")
            continue
        real = {opt for param in commands[command] for opt in param.opts + param.secondary_opts}
        for key in tables(section, "option"):
            for option in re.findall(r"`(-[-\w]+)`", key):
                if option not in real:
                    wrong.append(f"{title}: {option}")
    assert not wrong, "docs/cli.md documents what the CLI does not have:\n" + "\n".join(wrong)


CONFIG_SECTIONS = {"[models.ROLE]": ModelSettings, "[chunking]": ChunkingSettings, "[metrics.PIPELINE]": MetricSettings,
                   "[metrics.PIPELINE.diversity_bar]": DiversityBarSettings}


def test_config_reference_names_every_field_with_its_default():
    text = (DOCS / "config.md").read_text(encoding="utf-8")
    documented = sections(text, "[")
    assert {title.split(".")[0].strip("[]") for title in documented} == set(Config.model_fields)
    problems = []
    for title, model in CONFIG_SECTIONS.items():
        section = documented.get(title)
        assert section is not None, f"docs/config.md: no '## {title}' section"
        rows = {key.strip("`"): row for key, row in tables(section, "key").items()}
        for name, field in model.model_fields.items():
            if name not in rows:
                problems.append(f"{title}: {name} is not documented")
            elif field.default is not None and str(field.default) not in rows[name]:
                problems.append(f"{title}: {name}'s default {field.default!r} is not given")
        problems += [f"{title}: {key} is not a field" for key in rows if key not in model.model_fields]
    for role in ROLES:
        if not mentions(documented["[models.ROLE]"], f"`{role}`"):
            problems.append(f"[models.ROLE]: role {role} is not documented")
    assert not problems, "docs/config.md:\n" + "\n".join(problems)


def toml_blocks() -> list[tuple[str, int, str]]:
    return [(doc.name, line, "\n".join(lines)) for doc in sorted(DOCS.glob("*.md"))
            for language, line, lines in blocks(doc) if language == "toml"]


@pytest.mark.parametrize("doc, line, text", toml_blocks(), ids=lambda value: str(value)[:20])
def test_every_toml_example_is_a_valid_datagen_toml(doc, line, text):
    data = tomllib.loads(text)
    Config.model_validate(data)
    for role, settings in data.get("models", {}).items():
        assert not {"api_key", "key", "token", "secret", "password"} & set(settings), f"{doc}:{line}: a key in a file"


def test_the_readme_links_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in sorted(DOCS.glob("*.md")):
        assert f"(docs/{doc.name})" in readme, doc.name
