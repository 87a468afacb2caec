"""Hand a dataset to a trainer: the data files in the record shape the trainer reads, and a config (or script) that
trains on them, so that one command starts a fine-tuning run.

`write_trainer_export(trainer, splits, folder, settings)` writes, in `folder`:

    train.jsonl, validation.jsonl, test.jsonl   the splits, in the trainer's record shape (an empty split: no file)
    axolotl.yaml | trl_sft.yaml | llama_factory.yaml + dataset_info.json | train_unsloth.py

The configs train on train.jsonl and evaluate on validation.jsonl (when it has records); test.jsonl is the held-out
split, for the user's own evaluation after training: no config names it. Every path in a config is relative to the
folder, so the folder can be copied to the machine with the GPU whole; the command is run from inside it.

Conventions, per trainer, as their own code has them (checked against the installed versions by `make trainers`,
tests/trainers/; see docs/training.md):

- axolotl (0.19-0.21, `axolotl/utils/schemas/datasets.py`, `docs/dataset-formats/conversation.qmd`): `messages`
  records under a `type: chat_template` dataset stanza (`type: sharegpt` is deprecated and refused by its schema);
  the validation file as `test_datasets` with `val_set_size: 0` (its schema refuses both at once).
- TRL (1.16, `trl/scripts/sft.py`, `trl/scripts/utils.py`, `trl/data_utils.py`): conversational prompt-completion
  records, which SFTTrainer trains on the completion only; `trl sft --config` loads `dataset_name` with
  `datasets.load_dataset(dataset_name)`, so the config names the folder and the splits (`dataset_train_split`,
  `dataset_test_split: validation`).
- LLaMA-Factory (0.9.5, `llamafactory/data/parser.py` `DatasetAttr`, `data/converter.py`
  `SharegptDatasetConverter`): ShareGPT `conversations` records described in `dataset_info.json`.
- Unsloth (2026.x docs and notebooks): `messages` records, and a script that loads the model with
  `FastLanguageModel`, renders each conversation with the chat template and trains with TRL's SFTTrainer on the
  responses only.
"""

import json
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from datagen.dataset.records import messages, openai_record, prompt_completion_record, sharegpt_record
from datagen.errors import InputError
from datagen.samples import Sample
from datagen.text.tokens import count_tokens
from datagen.util import replacing, write_jsonl
from datagen.dataset.unsloth_script import UNSLOTH_SCRIPT

TRAINERS = ("axolotl", "trl", "llama-factory", "unsloth")
ADAPTERS = ("lora", "qlora", "full")
SPLITS = ("train", "validation", "test")

# The default learning rates: 2e-4 for LoRA/QLoRA is the rate of the LoRA examples of axolotl
# (examples/*/lora.yml, qlora.yml), Unsloth's notebooks and TRL's LoRA SFT command in its docs; 2e-5 for full
# fine-tuning is that of axolotl's full fine-tune examples and TRL's SFT docs (a LoRA rate would wreck the weights).
DEFAULT_LEARNING_RATES = {"lora": 2e-4, "qlora": 2e-4, "full": 2e-5}
# LoRA's shape when an adapter is trained: rank 16, alpha 2 x rank, on every linear layer (the common default of
# the trainers' LoRA examples).
LORA_R, LORA_ALPHA, LORA_DROPOUT = 16, 32, 0.05
# Tokens a record's text does not count but a chat template adds: per message, a role header and an end-of-turn
# marker (ChatML: "<|im_start|>assistant\n" ... "<|im_end|>\n", 5 tokens; Llama 3's headers: 5 to 6), plus the
# template's own preamble (a default system prompt, as Qwen's template adds when there is none: about 30).
TEMPLATE_TOKENS_PER_MESSAGE = 8
TEMPLATE_TOKENS_PER_RECORD = 48
# Sequence lengths are rounded up to a multiple of this: the lengths trainers and their attention kernels are tuned
# for (flash-attention and packing work in blocks; axolotl's and LLaMA-Factory's examples use 512..8192 in steps of
# 256 or more), and a round length leaves room for the difference between the yardstick tokenizer and the model's.
SEQUENCE_LEN_STEP = 256

CONFIG_FILES = {"axolotl": "axolotl.yaml", "trl": "trl_sft.yaml", "llama-factory": "llama_factory.yaml",
                "unsloth": "train_unsloth.py"}
DATASET_INFO = "dataset_info.json"
# The names the LLaMA-Factory config gives the splits in dataset_info.json.
LLAMA_FACTORY_NAMES = {"train": "datagen_train", "validation": "datagen_validation"}
# Where each trainer writes the trained model (or adapter), relative to the folder.
OUTPUT_DIR = "outputs"


@dataclass(frozen=True)
class TrainingSettings:
    """How to train on an export: the model, the kind of fine-tuning, and the few numbers every trainer needs.
    Frozen.

    Args:
        base_model: the Hugging Face model id or local path to fine-tune (required, not empty).
        adapter: "lora" (default), "qlora" (LoRA on the model loaded in 4 bits) or "full" (every weight).
        sequence_len: the longest sequence the trainer takes, in tokens; None (default): measured from the data
            (the longest record, plus the chat template's markers, rounded up to a multiple of 256).
        epochs: passes over the training split; default 3.0.
        learning_rate: None (default): 2e-4 for lora and qlora, 2e-5 for full (see DEFAULT_LEARNING_RATES).
        system: a system prompt put first in every conversation; None (default): none.
        template: the trainer's own name of the chat template to train with (axolotl's `chat_template`, e.g.
            "chatml"; LLaMA-Factory's `template`, e.g. "qwen"; Unsloth's `get_chat_template` name, e.g.
            "qwen-2.5"); None (default): the base model's own chat template, from its tokenizer (axolotl's
            `tokenizer_default`; LLaMA-Factory parses it from the tokenizer when `template` is left out; the Unsloth
            script keeps the tokenizer's). A base model without a chat template needs one. TRL always uses the
            tokenizer's, so a name is refused there.
    """

    base_model: str
    adapter: str = "lora"
    sequence_len: int | None = None
    epochs: float = 3.0
    learning_rate: float | None = None
    system: str | None = None
    template: str | None = None

    @property
    def rate(self) -> float:
        """The learning rate the config uses: the one given, or the adapter's default."""
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATES[self.adapter]


@dataclass
class TrainerExport:
    """What `write_trainer_export` wrote.

    Args:
        folder: the folder it wrote in.
        trainer: one of TRAINERS.
        files: every file written, data and configs.
        records: the records written per split ({"train": n, "validation": n, "test": n}; 0: no file).
        sequence_len: the sequence length the config uses.
        longest_tokens: the longest record measured, in tokens (datagen's yardstick, template markers included).
        command: the shell command that starts training on these files.
        left_out: samples the export's screen left out, by reason (datagen.dataset.screening); {}: none.
    """

    folder: Path
    trainer: str
    files: list[Path]
    records: dict[str, int]
    sequence_len: int
    longest_tokens: int
    command: str
    left_out: dict[str, int] = field(default_factory=dict)


# --- records --------------------------------------------------------------------------------------------------

RECORDS = {"axolotl": openai_record, "trl": prompt_completion_record, "llama-factory": sharegpt_record,
           "unsloth": openai_record}


# --- measuring ------------------------------------------------------------------------------------------------

def record_tokens(sample: Sample, system: str | None = None) -> int:
    """A conversation's length in tokens as a trainer sees it, estimated: its texts counted with datagen's
    yardstick (tiktoken's o200k_base, `datagen.text.tokens`: not the base model's tokenizer, which cannot be
    loaded offline), plus the chat template's markers (TEMPLATE_TOKENS_PER_MESSAGE a message and
    TEMPLATE_TOKENS_PER_RECORD a conversation)."""
    turns = messages(sample, system)
    return (sum(count_tokens(m["content"]) for m in turns) + TEMPLATE_TOKENS_PER_MESSAGE * len(turns)
            + TEMPLATE_TOKENS_PER_RECORD)


def round_sequence_len(tokens: int) -> int:
    """`tokens` rounded up to a multiple of SEQUENCE_LEN_STEP (256), at least one step."""
    return max(1, math.ceil(tokens / SEQUENCE_LEN_STEP)) * SEQUENCE_LEN_STEP


# --- checks ---------------------------------------------------------------------------------------------------

def check_settings(trainer: str, settings: TrainingSettings) -> None:
    """Refuse a trainer or settings that cannot make a config, with a one-line InputError naming the culprit."""
    if trainer not in TRAINERS:
        raise InputError(f"unknown trainer {trainer!r}: use one of {', '.join(TRAINERS)}")
    if not isinstance(settings.base_model, str) or not settings.base_model.strip():
        raise InputError("--base-model is empty: give the Hugging Face id or local path of the model to fine-tune")
    if settings.adapter not in ADAPTERS:
        raise InputError(f"unknown adapter {settings.adapter!r}: use one of {', '.join(ADAPTERS)}")
    if not settings.epochs > 0 or not math.isfinite(settings.epochs):
        raise InputError(f"--epochs must be above 0, got {settings.epochs}")
    if settings.learning_rate is not None and not (0 < settings.learning_rate < 1):
        raise InputError(f"--learning-rate must be between 0 and 1, got {settings.learning_rate}")
    if settings.sequence_len is not None and (isinstance(settings.sequence_len, bool)
                                              or not isinstance(settings.sequence_len, int)
                                              or settings.sequence_len <= 0):
        raise InputError(f"--sequence-len must be a whole number of tokens above 0, got {settings.sequence_len!r}")
    if settings.template is not None:
        if trainer == "trl":
            raise InputError("a chat template name does not apply to trl: it trains with the base model's "
                             "tokenizer's chat template")
        if not settings.template.strip() or any(c.isspace() for c in settings.template):
            raise InputError(f"chat template name {settings.template!r}: give the trainer's name of one, "
                             "such as chatml")
    if trainer == "unsloth" and settings.adapter == "full":
        # Unsloth's script is the LoRA recipe (get_peft_model); full fine-tuning is another set-up there.
        raise InputError("--adapter full is not offered for unsloth (its script trains a LoRA adapter): use lora "
                         "or qlora, or export --for axolotl, trl or llama-factory")


# --- configs --------------------------------------------------------------------------------------------------

def _axolotl(settings: TrainingSettings, sequence_len: int, has_validation: bool) -> dict:
    stanza = {"path": "train.jsonl", "ds_type": "json", "split": "train", "type": "chat_template",
              "field_messages": "messages", "message_property_mappings": {"role": "role", "content": "content"},
              "roles_to_train": ["assistant"], "train_on_eos": "turn"}
    config: dict = {"base_model": settings.base_model,
                    "chat_template": settings.template or "tokenizer_default",
                    "datasets": [stanza]}
    if has_validation:
        # test_datasets and a non-zero val_set_size are refused together by axolotl's schema.
        config["test_datasets"] = [{**stanza, "path": "validation.jsonl"}]
    config["val_set_size"] = 0
    if settings.adapter != "full":
        config.update({"adapter": settings.adapter, "lora_r": LORA_R, "lora_alpha": LORA_ALPHA,
                       "lora_dropout": LORA_DROPOUT, "lora_target_linear": True})
        if settings.adapter == "qlora":
            config["load_in_4bit"] = True
    config.update({"sequence_len": sequence_len, "sample_packing": False, "num_epochs": settings.epochs,
                   "learning_rate": settings.rate, "micro_batch_size": 1, "gradient_accumulation_steps": 8,
                   "optimizer": "adamw_torch", "lr_scheduler": "cosine", "warmup_ratio": 0.05, "bf16": "auto",
                   "gradient_checkpointing": True, "output_dir": OUTPUT_DIR})
    if has_validation:
        config["eval_strategy"] = "epoch"
    return config


def _trl(settings: TrainingSettings, sequence_len: int, has_validation: bool, folder: Path) -> dict:
    # `trl sft` loads `load_dataset(dataset_name)`: the folder, whose train/validation/test files become the
    # splits of those names (datasets' split patterns); training reads dataset_train_split, evaluation
    # dataset_test_split, so the held-out test split is loaded but never used. The folder is named as seen from
    # inside it ("../NAME"): datasets 5 derives the dataset's name from the path's last part, and "." has none.
    config: dict = {"model_name_or_path": settings.base_model, "dataset_name": f"../{folder.resolve().name}",
                    "dataset_train_split": "train", "output_dir": OUTPUT_DIR, "max_length": sequence_len,
                    "num_train_epochs": settings.epochs, "learning_rate": settings.rate,
                    "per_device_train_batch_size": 1, "gradient_accumulation_steps": 8,
                    # transformers 5 dropped warmup_ratio: a warmup_steps below 1 is the ratio of the steps
                    "lr_scheduler_type": "cosine", "warmup_steps": 0.05, "gradient_checkpointing": True,
                    "completion_only_loss": True, "logging_steps": 10, "save_strategy": "epoch",
                    "report_to": "none"}
    if has_validation:
        config.update({"dataset_test_split": "validation", "eval_strategy": "epoch",
                       "per_device_eval_batch_size": 1})
    else:
        config["eval_strategy"] = "no"
    if settings.adapter != "full":
        config.update({"use_peft": True, "lora_r": LORA_R, "lora_alpha": LORA_ALPHA, "lora_dropout": LORA_DROPOUT,
                       "lora_target_modules": "all-linear"})
        if settings.adapter == "qlora":
            config["load_in_4bit"] = True
    return config


def _llama_factory_info(has_validation: bool) -> dict:
    entry = {"formatting": "sharegpt", "columns": {"messages": "conversations"},
             "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                      "system_tag": "system"}}
    info = {LLAMA_FACTORY_NAMES["train"]: {"file_name": "train.jsonl", **entry}}
    if has_validation:
        info[LLAMA_FACTORY_NAMES["validation"]] = {"file_name": "validation.jsonl", **entry}
    return info


def _llama_factory(settings: TrainingSettings, sequence_len: int, has_validation: bool) -> dict:
    config: dict = {"model_name_or_path": settings.base_model, "stage": "sft", "do_train": True,
                    "finetuning_type": "full" if settings.adapter == "full" else "lora"}
    if settings.adapter != "full":
        config.update({"lora_rank": LORA_R, "lora_alpha": LORA_ALPHA, "lora_dropout": LORA_DROPOUT,
                       "lora_target": "all"})
        if settings.adapter == "qlora":
            config["quantization_bit"] = 4
    config.update({"dataset_dir": ".", "dataset": LLAMA_FACTORY_NAMES["train"]})
    if settings.template is not None:  # else LLaMA-Factory parses the tokenizer's own chat template
        config["template"] = settings.template
    config.update({"cutoff_len": sequence_len, "num_train_epochs": settings.epochs,
                   "learning_rate": settings.rate, "per_device_train_batch_size": 1,
                   "gradient_accumulation_steps": 8, "lr_scheduler_type": "cosine", "warmup_ratio": 0.05,
                   "bf16": True, "logging_steps": 10, "save_strategy": "epoch", "output_dir": OUTPUT_DIR,
                   "overwrite_output_dir": True, "report_to": "none"})
    if has_validation:
        config.update({"eval_dataset": LLAMA_FACTORY_NAMES["validation"], "per_device_eval_batch_size": 1,
                       "eval_strategy": "epoch"})
    return config


def _unsloth(settings: TrainingSettings, sequence_len: int, has_validation: bool) -> str:
    return UNSLOTH_SCRIPT.format(
        base_model=settings.base_model, sequence_len=sequence_len, template=settings.template,
        load_in_4bit=settings.adapter == "qlora", has_validation=has_validation, lora_r=LORA_R,
        lora_alpha=LORA_ALPHA, epochs=settings.epochs, learning_rate=settings.rate, output_dir=OUTPUT_DIR,
        adapter_dir=f"{OUTPUT_DIR}/adapter",
        validation_note=", evaluated on validation.jsonl" if has_validation else "")


COMMANDS = {"axolotl": "axolotl train axolotl.yaml", "trl": "trl sft --config trl_sft.yaml",
            "llama-factory": "llamafactory-cli train llama_factory.yaml", "unsloth": "python train_unsloth.py"}


# --- writing --------------------------------------------------------------------------------------------------

def _write_text(path: Path, text: str) -> None:
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")


def _write_yaml(path: Path, config: dict, header: str) -> None:
    _write_text(path, header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=120))


def write_trainer_export(trainer: str, splits: dict[str, list[Sample]], folder: Path,
                         settings: TrainingSettings) -> TrainerExport:
    """Write the splits as `trainer` reads them, and the config (or script) that trains on them, in `folder`.

    The data files are train.jsonl, validation.jsonl and test.jsonl (an empty split gets no file, and a file of
    that name left by an earlier export is removed). The config trains on train.jsonl, evaluates on
    validation.jsonl when it has records, and never names test.jsonl: that is the held-out split, for evaluating
    the trained model. Each file is written whole under a temporary name and renamed into place; paths in the
    configs are relative to `folder`, and the command runs from it.

    Args:
        trainer: one of TRAINERS: "axolotl" (axolotl.yaml), "trl" (trl_sft.yaml, for `trl sft`), "llama-factory"
            (llama_factory.yaml and dataset_info.json) or "unsloth" (train_unsloth.py).
        splits: the samples by split: "train" (not empty), and "validation" and "test" (either may be empty or
            missing); multi-turn samples keep their earlier turns.
        folder: where to write; made if missing. Files of other names in it are left alone.
        settings: the model and the numbers of the run (see `TrainingSettings`). With `sequence_len` None, the
            length is measured: the longest record (`record_tokens`, every split counted), rounded up to a
            multiple of 256.

    Returns:
        The `TrainerExport`: the files, the records per split, the sequence length used and the longest record
        measured, and the command that starts training.

    Raises:
        InputError: an unknown trainer or adapter, an empty base model, epochs or a learning rate out of range,
            a sequence length shorter than the longest record, a chat template name for trl, full fine-tuning for
            unsloth, a split name other than train, validation and test, or no training samples.
    """
    check_settings(trainer, settings)
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise InputError(f"unknown split {unknown[0]!r}: the splits are {', '.join(SPLITS)}")
    by_split = {name: list(splits.get(name) or []) for name in SPLITS}
    if not by_split["train"]:
        raise InputError(f"no training samples to export for {trainer}: the train split is empty")
    sequence_len, longest = _sequence_len(by_split, settings)
    has_validation = bool(by_split["validation"])

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    to_record = RECORDS[trainer]
    files: list[Path] = []
    records: dict[str, int] = {}
    for name in SPLITS:
        path = folder / f"{name}.jsonl"
        records[name] = len(by_split[name])
        if by_split[name]:
            write_jsonl(path, (to_record(sample, settings.system) for sample in by_split[name]))
            files.append(path)
        else:  # an earlier export's file would read as this one's
            path.unlink(missing_ok=True)

    files.extend(_write_config(trainer, folder, settings, sequence_len, longest, has_validation))
    command = f"cd {shlex.quote(str(folder))} && {COMMANDS[trainer]}"
    return TrainerExport(folder=folder, trainer=trainer, files=files, records=records, sequence_len=sequence_len,
                         longest_tokens=longest, command=command)


def _sequence_len(by_split: dict[str, list[Sample]], settings: TrainingSettings) -> tuple[int, int]:
    """(the sequence length the config uses, the longest record measured), or an InputError when the one given is
    shorter than the longest record."""
    longest = max(record_tokens(sample, settings.system) for samples in by_split.values() for sample in samples)
    if settings.sequence_len is None:
        return round_sequence_len(longest), longest
    if settings.sequence_len < longest:
        raise InputError(f"--sequence-len {settings.sequence_len} is shorter than the longest record "
                         f"({longest} tokens, template markers included): give at least {longest}, or leave it "
                         "out to have it measured")
    return settings.sequence_len, longest


def _write_config(trainer: str, folder: Path, settings: TrainingSettings, sequence_len: int, longest: int,
                  has_validation: bool) -> list[Path]:
    """Write the trainer's config (and LLaMA-Factory's dataset_info.json); returns the files written."""
    files = []
    header = (f"# Written by datagen for {trainer}: train on train.jsonl"
              f"{', evaluate on validation.jsonl' if has_validation else ''}; the test split is held out, not\n"
              f"# used here: evaluate the trained model on it.\n"
              f"# Run from this folder: {COMMANDS[trainer]}\n"
              f"# sequence length {sequence_len}: the longest record is {longest} tokens (datagen's estimate).\n")
    config_path = folder / CONFIG_FILES[trainer]
    if trainer == "axolotl":
        _write_yaml(config_path, _axolotl(settings, sequence_len, has_validation), header)
    elif trainer == "trl":
        _write_yaml(config_path, _trl(settings, sequence_len, has_validation, folder), header)
    elif trainer == "llama-factory":
        info_path = folder / DATASET_INFO
        _write_text(info_path, json.dumps(_llama_factory_info(has_validation), indent=2) + "\n")
        files.append(info_path)
        _write_yaml(config_path, _llama_factory(settings, sequence_len, has_validation), header)
    else:
        _write_text(config_path, _unsloth(settings, sequence_len, has_validation))
    files.append(config_path)
    return files
