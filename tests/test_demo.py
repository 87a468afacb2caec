"""`make demo` (scripts/demo.py), for real on the embedded model: the design card's loop, each step's command shown,
and a table at the end whose figures are the run's own; nothing degenerate is exported."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from datagen.runs import summarize
from datagen.text.degenerate import REWRITE_MIN_LENGTH_RATIO, degenerate
from datagen.workspace import read_manifest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts/demo.py"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def run_demo(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEMO), "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=1100)


def test_the_demo_walks_the_loop_and_ends_with_a_table_of_what_each_step_gave(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for step in ("devset", "evaluate", "optimize", "generate"):
        assert f"$ datagen {step} style_clone" in result.stdout
    lines = result.stdout.splitlines()
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"="}]
    table = "\n".join(lines[rules[-2] + 1:rules[-1]])
    rows = [line.split()[0] for line in table.splitlines() if line.strip() and not line.startswith(" ")]
    assert rows == ["dev", "evaluate", "optimize", "generate", "export"], table

    # The figures are the stores' own.
    items = [json.loads(line) for line in (out / "dev.jsonl").read_text().splitlines()]
    val = sum(item["split"] == "val" for item in items)
    assert f"{len(items)} chunks: {len(items) - val} train, {val} val" in table
    manifest = read_manifest(out / "compiled/style_clone/demo.json")
    assert manifest["held_out"]["before"] in table and manifest["held_out"]["after"] in table
    summary = summarize(out / "run")
    assert summary.done + summary.failed == summary.chunks > 0
    assert f"{summary.chunks} chunks: {summary.samples} samples made, {summary.kept or 0} pass" in table
    for reason, count in summary.dropped.items():
        assert f"{reason} {count}" in table
    for kind, (count, _) in summary.failures.items():
        assert f"{kind} {count}" in table

    # What is exported passed the drop checks (and the gate); an empty result is said so, not hidden.
    records = []
    if (out / "hf").exists():
        import datasets

        records = [record for split in datasets.load_from_disk(str(out / "hf")).values() for record in split]
    # The gate's samples less those the export's screen left out, each reason counted in the table.
    screened = re.search(r"screened out: (.*) \(datagen quality", table).group(1)
    left_out = {reason: int(n) for n, reason in re.findall(r"(\d+) ([\w-]+)", screened)}
    assert set(left_out) <= {"near-duplicate", "contaminated"} and (left_out or screened == "none"), screened
    assert len(records) == (summary.kept or 0) - sum(left_out.values())
    if not records:
        assert "nothing to export" in table
    for record in records:
        generic, styled = record["input"], record["output"]
        assert degenerate(generic, source=styled, field="generic", min_length_ratio=REWRITE_MIN_LENGTH_RATIO) is None
    assert "capable model" in result.stdout and "datagen view" in result.stdout
    assert "SmolLM2-135M-Instruct" in result.stdout  # what ran, named: the embedded default


def test_the_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = run_demo(tmp_path)
    assert result.returncode == 1 and "is not a workspace the demo made" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"
    on_a_file = run_demo(tmp_path / "notes.txt")
    assert on_a_file.returncode == 1 and "is a file" in on_a_file.stderr and "Traceback" not in on_a_file.stderr
