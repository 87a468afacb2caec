"""LLaMA-Factory's own code on the llama-factory exports: its dataset_info parser (llamafactory.data.parser
get_dataset_list) reads the entries the config names, its ShareGPT converter (data/converter.py) turns every record
into aligned user/assistant turns without skipping one, and its hparams parser (get_train_args) accepts
llama_factory.yaml (no model is loaded)."""

import importlib.machinery
import json
import sys
import types

import pytest
import yaml

# llamafactory.data imports torchaudio at the top (mm_plugin.py, for audio datasets): PyPI's torchaudio wheels are
# built against CUDA torch, and this venv has the CPU build, so an empty stand-in takes its place; no text dataset
# touches it.
_stand_in = types.ModuleType("torchaudio")
_stand_in.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
sys.modules.setdefault("torchaudio", _stand_in)
from llamafactory.data.converter import get_dataset_converter
from llamafactory.data.parser import get_dataset_list
from llamafactory.hparams import get_train_args

from .conftest import folders


@pytest.fixture(params=["lora", "full", "qlora", "run"])
def folder(request, exports):
    (found,) = [f for f in folders(exports, "llama-factory") if f.name == f"llama-factory-{request.param}"]
    return found


def test_dataset_info_parses_and_every_record_converts(folder):
    config = yaml.safe_load((folder / "llama_factory.yaml").read_text(encoding="utf-8"))
    names = [config["dataset"]] + ([config["eval_dataset"]] if "eval_dataset" in config else [])
    attrs = get_dataset_list(names, str(folder / config["dataset_dir"]))
    assert [a.load_from for a in attrs] == ["file"] * len(names)
    assert [a.dataset_name for a in attrs] == ["train.jsonl", "validation.jsonl"][:len(names)]
    for attr in attrs:
        print(f"{folder.name}: {attr.dataset_name}: formatting {attr.formatting}, messages {attr.messages!r}, "
              f"role {attr.role_tag!r}, user {attr.user_tag!r}, assistant {attr.assistant_tag!r}")
        converter = get_dataset_converter(attr.formatting, attr, data_args=None)
        for line in (folder / attr.dataset_name).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            converted = converter(record)
            prompt, response = converted["_prompt"], converted["_response"]
            assert prompt and response, f"skipped as abnormal: {record}"
            assert [m["role"] for m in prompt][-1] == "user" and [m["role"] for m in response] == ["assistant"]
            turns = record[attr.messages]
            if turns[0][attr.role_tag] == attr.system_tag:
                assert converted["_system"] == turns[0][attr.content_tag]
            assert response[0]["content"] == turns[-1][attr.content_tag]


def test_hparams_parser_accepts_the_training_yaml(folder, monkeypatch):
    monkeypatch.chdir(folder)  # the command runs in the folder
    config = yaml.safe_load((folder / "llama_factory.yaml").read_text(encoding="utf-8"))
    # bf16 needs a GPU: TrainingArguments refuses it on this machine, so it is checked here and parsed off.
    assert config.pop("bf16") is True
    model_args, data_args, training_args, finetuning_args, _ = get_train_args({**config, "use_cpu": True})
    print(f"{folder.name}: finetuning_type {finetuning_args.finetuning_type}, dataset {data_args.dataset}, "
          f"eval_dataset {data_args.eval_dataset}, cutoff_len {data_args.cutoff_len}, template {data_args.template}, "
          f"epochs {training_args.num_train_epochs}, lr {training_args.learning_rate}")
    assert data_args.dataset == [config["dataset"]] and data_args.cutoff_len == config["cutoff_len"]
    assert finetuning_args.finetuning_type == config["finetuning_type"]
    assert (data_args.eval_dataset or None) == ([config["eval_dataset"]] if "eval_dataset" in config else None)
