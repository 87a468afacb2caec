"""The trainer hand-off (datagen/dataset/trainers.py), at the level of its files: each record's keys are the ones
its config says the trainer reads, no config names the held-out test split, the settings reach the config, the
measured sequence length covers the longest record, and bad input is refused. Fast, no torch: the trainers' own
code checks the same files in tests/trainers/ (`make trainers`)."""

import json
import py_compile
import shlex

import pytest
import yaml

from datagen.dataset.trainers import (DEFAULT_LEARNING_RATES, SEQUENCE_LEN_STEP, TRAINERS, TrainingSettings,
                                      record_tokens, write_trainer_export)
from datagen.errors import InputError
from datagen.samples import Sample

SYSTEM = "You rewrite plain text in the author's style."
MULTI = Sample("And the third?", "Third answer.", history=(("First question", "First answer."),
                                                            ("Second question", "Second answer.")))
LONG = Sample("Rewrite this. " + "word " * 900, "A long answer. " + "text " * 400)


def make_splits(validation=True, test=True) -> dict[str, list[Sample]]:
    return {"train": [Sample(f"plain text {i}", f"styled text {i}") for i in range(5)] + [MULTI, LONG],
            "validation": [Sample("plain v", "styled v")] if validation else [],
            "test": [Sample("plain t", "styled t"), Sample("plain t2", "styled t2")] if test else []}


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def config_of(export) -> tuple[str, dict | None]:
    path = next(f for f in export.files if f.suffix in (".yaml", ".py"))
    text = path.read_text(encoding="utf-8")
    return text, (yaml.safe_load(text) if path.suffix == ".yaml" else None)


@pytest.fixture
def settings():
    return TrainingSettings(base_model="Qwen/Qwen2.5-0.5B-Instruct", system=SYSTEM)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_trainer_writes_the_splits_and_a_config_that_never_names_test(trainer, tmp_path, settings):
    export = write_trainer_export(trainer, make_splits(), tmp_path / "out", settings)
    assert export.trainer == trainer and export.folder == tmp_path / "out"
    assert export.records == {"train": 7, "validation": 1, "test": 2}
    names = {f.name for f in export.files}
    assert {"train.jsonl", "validation.jsonl", "test.jsonl"} <= names
    assert all(f.is_file() for f in export.files)
    for split, count in export.records.items():
        assert len(read_jsonl(tmp_path / "out" / f"{split}.jsonl")) == count
    text, _ = config_of(export)
    if trainer in ("axolotl", "unsloth"):  # trl names the folder, llama-factory the entries of dataset_info.json
        assert "train.jsonl" in text and "validation.jsonl" in text
    for path in export.files:
        if path.suffix in (".yaml", ".json", ".py"):
            assert "test.jsonl" not in path.read_text(encoding="utf-8"), path.name
    assert export.command.startswith(f"cd {shlex.quote(str(tmp_path / 'out'))} && ")
    assert not list((tmp_path / "out").glob("*.partial*"))


def test_axolotl_records_match_the_dataset_stanza(tmp_path, settings):
    export = write_trainer_export("axolotl", make_splits(), tmp_path, settings)
    _, config = config_of(export)
    assert export.command.endswith("axolotl train axolotl.yaml")
    (stanza,) = config["datasets"]
    assert stanza["type"] == "chat_template" and "sharegpt" not in json.dumps(config)
    assert stanza["path"] == "train.jsonl" and stanza["ds_type"] == "json"
    assert stanza["roles_to_train"] == ["assistant"]
    assert config["chat_template"] == "tokenizer_default"
    assert [d["path"] for d in config["test_datasets"]] == ["validation.jsonl"] and config["val_set_size"] == 0
    role, content = stanza["message_property_mappings"]["role"], stanza["message_property_mappings"]["content"]
    for split in ("train", "validation", "test"):
        for record in read_jsonl(tmp_path / f"{split}.jsonl"):
            assert set(record) == {stanza["field_messages"]}
            for message in record[stanza["field_messages"]]:
                assert set(message) == {role, content}
                assert message[role] in ("system", "user", "assistant")
            assert record["messages"][0] == {"role": "system", "content": SYSTEM}
            assert record["messages"][-1]["role"] == "assistant"
    assert config["base_model"] == settings.base_model and config["adapter"] == "lora"
    assert config["sequence_len"] == export.sequence_len and config["num_epochs"] == 3.0
    assert config["learning_rate"] == DEFAULT_LEARNING_RATES["lora"] and config["output_dir"] == "outputs"


def test_trl_records_are_conversational_prompt_completion(tmp_path, settings):
    export = write_trainer_export("trl", make_splits(), tmp_path, settings)
    _, config = config_of(export)
    assert export.command.endswith("trl sft --config trl_sft.yaml")
    for split in ("train", "validation", "test"):
        for record in read_jsonl(tmp_path / f"{split}.jsonl"):
            assert set(record) == {"prompt", "completion"}
            assert all(set(m) == {"role", "content"} for m in record["prompt"] + record["completion"])
            assert record["prompt"][0] == {"role": "system", "content": SYSTEM}
            assert record["prompt"][-1]["role"] == "user"
            assert [m["role"] for m in record["completion"]] == ["assistant"]
    assert config["model_name_or_path"] == settings.base_model
    assert config["dataset_name"] == f"../{tmp_path.name}" and config["dataset_train_split"] == "train"
    assert config["dataset_test_split"] == "validation" and config["eval_strategy"] == "epoch"
    assert config["max_length"] == export.sequence_len and config["num_train_epochs"] == 3.0
    assert config["use_peft"] is True and config["lora_r"] > 0 and config["completion_only_loss"] is True


def test_trl_without_validation_does_not_evaluate(tmp_path, settings):
    export = write_trainer_export("trl", make_splits(validation=False), tmp_path, settings)
    _, config = config_of(export)
    assert config["eval_strategy"] == "no" and "dataset_test_split" not in config
    assert not (tmp_path / "validation.jsonl").exists() and export.records["validation"] == 0


def test_llama_factory_records_match_dataset_info(tmp_path, settings):
    export = write_trainer_export("llama-factory", make_splits(), tmp_path, settings)
    _, config = config_of(export)
    assert export.command.endswith("llamafactory-cli train llama_factory.yaml")
    info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
    assert set(info) == {config["dataset"], config["eval_dataset"]}
    assert info[config["dataset"]]["file_name"] == "train.jsonl"
    assert info[config["eval_dataset"]]["file_name"] == "validation.jsonl"
    assert "test.jsonl" not in json.dumps(info)
    for name, entry in info.items():
        assert entry["formatting"] == "sharegpt"
        tags, column = entry["tags"], entry["columns"]["messages"]
        for record in read_jsonl(tmp_path / entry["file_name"]):
            assert set(record) == {column}
            turns = record[column]
            assert all(set(t) == {tags["role_tag"], tags["content_tag"]} for t in turns)
            assert turns[0] == {tags["role_tag"]: tags["system_tag"], tags["content_tag"]: SYSTEM}
            # LLaMA-Factory's rule after the system turn: user tags at odd positions, assistant at even.
            roles = [t[tags["role_tag"]] for t in turns[1:]]
            assert roles == [tags["user_tag"], tags["assistant_tag"]] * (len(roles) // 2) and roles
    assert config["stage"] == "sft" and config["do_train"] is True and config["finetuning_type"] == "lora"
    assert config["dataset_dir"] == "." and config["cutoff_len"] == export.sequence_len
    assert "template" not in config  # parsed from the base model's tokenizer unless one is named
    assert config["model_name_or_path"] == settings.base_model and config["output_dir"] == "outputs"


def test_llama_factory_without_validation_has_no_eval_dataset(tmp_path, settings):
    write_trainer_export("llama-factory", make_splits(validation=False), tmp_path, settings)
    config = yaml.safe_load((tmp_path / "llama_factory.yaml").read_text(encoding="utf-8"))
    info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
    assert "eval_dataset" not in config and set(info) == {config["dataset"]}


def test_unsloth_script_compiles_and_follows_the_documented_steps(tmp_path, settings):
    export = write_trainer_export("unsloth", make_splits(), tmp_path, settings)
    script = tmp_path / "train_unsloth.py"
    py_compile.compile(str(script), doraise=True)
    text = script.read_text(encoding="utf-8")
    assert export.command.endswith("python train_unsloth.py")
    order = ["FastLanguageModel.from_pretrained", "FastLanguageModel.get_peft_model", "get_chat_template(",
             "apply_chat_template", "SFTTrainer(", "train_on_responses_only(trainer", "trainer.train()"]
    positions = [text.index(step, text.index("BASE_MODEL =")) for step in order]
    assert positions == sorted(positions)
    assert f"MAX_SEQ_LENGTH = {export.sequence_len}" in text and repr(settings.base_model) in text
    assert "LOAD_IN_4BIT = False" in text and "test.jsonl\"" not in text and "'test.jsonl'" not in text
    for record in read_jsonl(tmp_path / "train.jsonl"):
        assert set(record) == {"messages"} and record["messages"][0]["role"] == "system"


def test_unsloth_turn_markers_are_read_from_the_template(tmp_path, settings):
    """The script's turn_markers on a ChatML and a Llama 3 template, rendered here without a tokenizer."""
    write_trainer_export("unsloth", make_splits(), tmp_path, settings)
    source = (tmp_path / "train_unsloth.py").read_text(encoding="utf-8")
    start = source.index("def turn_markers")
    namespace: dict = {}
    exec(source[start:source.index("\ndef to_text")], namespace)

    class Template:
        def __init__(self, open_turn, end):
            self.open_turn, self.end = open_turn, end

        def apply_chat_template(self, messages, tokenize):
            return "".join(self.open_turn(m["role"]) + m["content"] + self.end for m in messages)

    chatml = Template(lambda role: f"<|im_start|>{role}\n", "<|im_end|>\n")
    assert namespace["turn_markers"](chatml) == ("<|im_start|>user\n", "<|im_start|>assistant\n")
    llama3 = Template(lambda role: f"<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>")
    assert namespace["turn_markers"](llama3) == ("<|start_header_id|>user<|end_header_id|>\n\n",
                                                 "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_multi_turn_samples_keep_every_turn(tmp_path):
    settings = TrainingSettings(base_model="m")
    splits = {"train": [MULTI]}
    write_trainer_export("axolotl", splits, tmp_path / "a", settings)
    (record,) = read_jsonl(tmp_path / "a" / "train.jsonl")
    assert [(m["role"], m["content"]) for m in record["messages"]] == [
        ("user", "First question"), ("assistant", "First answer."), ("user", "Second question"),
        ("assistant", "Second answer."), ("user", "And the third?"), ("assistant", "Third answer.")]
    write_trainer_export("trl", splits, tmp_path / "t", settings)
    (record,) = read_jsonl(tmp_path / "t" / "train.jsonl")
    assert len(record["prompt"]) == 5 and record["completion"] == [{"role": "assistant", "content": "Third answer."}]
    write_trainer_export("llama-factory", splits, tmp_path / "l", settings)
    (record,) = read_jsonl(tmp_path / "l" / "train.jsonl")
    assert [t["from"] for t in record["conversations"]] == ["human", "gpt"] * 3


@pytest.mark.parametrize("trainer", ["axolotl", "trl", "llama-factory"])
def test_full_fine_tuning_and_qlora_reach_the_config(trainer, tmp_path):
    full = TrainingSettings(base_model="m", adapter="full", epochs=1.5, sequence_len=4096)
    _, config = config_of(write_trainer_export(trainer, make_splits(), tmp_path / "full", full))
    text = json.dumps(config)
    assert "lora_r" not in text and "lora_rank" not in text and "use_peft" not in text and "adapter" not in config
    assert 2e-5 in config.values() and 1.5 in config.values() and 4096 in config.values()
    if trainer == "llama-factory":
        assert config["finetuning_type"] == "full"
    qlora = TrainingSettings(base_model="m", adapter="qlora", learning_rate=1e-4)
    _, config = config_of(write_trainer_export(trainer, make_splits(), tmp_path / "q", qlora))
    assert 1e-4 in config.values()
    assert config.get("load_in_4bit") is True or config.get("quantization_bit") == 4


def test_sequence_len_is_measured_and_rounded(tmp_path):
    settings = TrainingSettings(base_model="m")
    export = write_trainer_export("axolotl", make_splits(), tmp_path, settings)
    longest = max(record_tokens(s) for samples in make_splits().values() for s in samples)
    assert export.longest_tokens == longest == record_tokens(LONG) > 1300
    assert export.sequence_len >= longest and export.sequence_len % SEQUENCE_LEN_STEP == 0
    assert export.sequence_len - longest < SEQUENCE_LEN_STEP
    # a system prompt lengthens every record
    assert record_tokens(LONG, SYSTEM) > record_tokens(LONG)


def test_a_given_sequence_len_is_used_and_one_too_short_refused(tmp_path):
    export = write_trainer_export("trl", make_splits(), tmp_path, TrainingSettings(base_model="m", sequence_len=8192))
    assert export.sequence_len == 8192 and config_of(export)[1]["max_length"] == 8192
    with pytest.raises(InputError, match=r"--sequence-len 512 is shorter than the longest record \(\d+ tokens"):
        write_trainer_export("trl", make_splits(), tmp_path, TrainingSettings(base_model="m", sequence_len=512))


def test_an_empty_split_leaves_no_stale_file(tmp_path):
    settings = TrainingSettings(base_model="m")
    write_trainer_export("axolotl", make_splits(), tmp_path, settings)
    export = write_trainer_export("axolotl", make_splits(validation=False, test=False), tmp_path, settings)
    assert not (tmp_path / "validation.jsonl").exists() and not (tmp_path / "test.jsonl").exists()
    _, config = config_of(export)
    assert "test_datasets" not in config and config["val_set_size"] == 0
    assert export.records == {"train": 7, "validation": 0, "test": 0}


def test_a_named_template_reaches_each_config(tmp_path):
    for trainer, key in (("axolotl", "chat_template"), ("llama-factory", "template")):
        export = write_trainer_export(trainer, make_splits(), tmp_path / trainer,
                                      TrainingSettings(base_model="m", template="chatml"))
        assert config_of(export)[1][key] == "chatml"
    export = write_trainer_export("unsloth", make_splits(), tmp_path / "u",
                                  TrainingSettings(base_model="m", template="qwen-2.5"))
    assert "CHAT_TEMPLATE = 'qwen-2.5'" in config_of(export)[0]


@pytest.mark.parametrize("trainer, settings, splits, message", [
    ("unsloth2", TrainingSettings(base_model="m"), None,
     "unknown trainer 'unsloth2': use one of axolotl, trl, llama-factory, unsloth"),
    ("trl", TrainingSettings(base_model=" "), None, "--base-model is empty"),
    ("trl", TrainingSettings(base_model="m", adapter="dora"), None, "unknown adapter 'dora': use one of lora, qlora"),
    ("trl", TrainingSettings(base_model="m", epochs=0), None, "--epochs must be above 0, got 0"),
    ("trl", TrainingSettings(base_model="m", epochs=-1.0), None, "--epochs must be above 0"),
    ("trl", TrainingSettings(base_model="m", learning_rate=0.0), None, "--learning-rate must be between 0 and 1"),
    ("trl", TrainingSettings(base_model="m", sequence_len=0), None, "--sequence-len must be a whole number"),
    ("trl", TrainingSettings(base_model="m", template="chatml"), None, "does not apply to trl"),
    ("unsloth", TrainingSettings(base_model="m", adapter="full"), None, "--adapter full is not offered for unsloth"),
    ("trl", TrainingSettings(base_model="m"), {"train": [], "validation": [Sample("a", "b")]},
     "no training samples to export for trl"),
    ("trl", TrainingSettings(base_model="m"), {"train": [Sample("a", "b")], "dev": []}, "unknown split 'dev'"),
])
def test_bad_input_is_refused_in_one_line(trainer, settings, splits, message, tmp_path):
    with pytest.raises(InputError) as caught:
        write_trainer_export(trainer, splits or make_splits(), tmp_path / "out", settings)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_the_trainer_tier_is_not_collected_by_the_default_suite():
    import subprocess
    import sys

    from .conftest import ROOT

    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                "tests"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert collected.returncode == 0, collected.stdout[-2000:]
    assert "tests/test_trainers.py::" in collected.stdout  # the collection did list the default suite
    assert "tests/trainers/" not in collected.stdout and (ROOT / "tests" / "trainers" / "test_trl.py").exists()


# --- from a run: datagen export RUN --for TRAINER -----------------------------------------------------------------

@pytest.mark.parametrize("trainer", TRAINERS)
def test_export_for_a_trainer_writes_the_runs_splits_and_never_names_test(workspace, trainer):
    from datagen.dataset.export import split_samples
    from datagen.dataset.records import openai_record, prompt_completion_record, sharegpt_record
    from datagen.store import RunStore

    from .conftest import run_cli
    from .test_export import make_run

    make_run(workspace, workspace / "out")
    result = run_cli("export", "out", "--for", trainer, "--base-model", "Qwen/Qwen2.5-0.5B-Instruct",
                     "--val-fraction", "0.3", "--system", SYSTEM, cwd=workspace)
    assert result.returncode == 0, result.stderr
    folder = workspace / "out" / f"for-{trainer}"
    assert f"{trainer}: out/for-{trainer} (train " in result.stdout and f"cd out/for-{trainer} && " in result.stdout
    with RunStore(workspace / "out") as store:
        grouped = split_samples(store, val_fraction=0.3)
    shape = {"axolotl": openai_record, "unsloth": openai_record, "trl": prompt_completion_record,
             "llama-factory": sharegpt_record}[trainer]
    for split in ("train", "validation", "test"):
        assert grouped[split], split  # the run is big enough for all three
        written = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines()]
        assert written == [shape(sample, SYSTEM) for _, _, sample in grouped[split]]
    configs = [p for p in folder.iterdir() if p.suffix in (".yaml", ".py") or p.name == "dataset_info.json"]
    assert configs and not any("test.jsonl" in p.read_text() for p in configs)
    card = (folder / "README.md").read_text()
    assert "held-out test split" in card and "Qwen/Qwen2.5-0.5B-Instruct" in card
    assert "configs:" not in card  # datasets would read the folder by the card's configs instead of its files


@pytest.mark.parametrize("args, fragment", [
    (["export", "out"], "give --format FORMAT (a file format) or --for TRAINER"),
    (["export", "out", "--format", "openai", "--for", "trl"], "or --for TRAINER (data and a config for a trainer), "
                                                              "not both"),
    (["export", "out", "--format", "openai", "--adapter", "full"], "--adapter goes with --for TRAINER"),
    (["export", "out", "--format", "openai", "--epochs", "3"], "--epochs goes with --for TRAINER"),  # its default
    (["export", "out", "--for", "trl"], "--for trl needs --base-model"),
    (["export", "out", "--for", "megatron", "--base-model", "m"], "unknown trainer 'megatron'"),
    (["export", "out", "--format", "openai", "--base-model", "m"], "--base-model goes with --for TRAINER"),
    (["export", "out", "--for", "trl", "--base-model", "m", "--epochs", "0"], "--epochs must be above 0"),
])
def test_export_for_bad_input_gets_a_one_line_error(workspace, args, fragment):
    from .conftest import run_cli
    from .test_export import make_run, one_line_error

    make_run(workspace, workspace / "out", limit=2)
    assert fragment in one_line_error(run_cli(*args, cwd=workspace))
