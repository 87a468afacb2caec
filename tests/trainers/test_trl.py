"""TRL's own code on the trl exports: `trl sft`'s parser (TrlParser over ScriptArguments, SFTConfig, ModelConfig
and DatasetMixtureConfig, as trl/scripts/sft.py builds it) reads trl_sft.yaml with no unknown key; the dataset loads
as sft.py loads it (datasets.load_dataset(dataset_name)) with the splits the config names; TRL sees
conversational prompt-completion records; and SFTTrainer prepares them (completion mask) and takes a training
step on a tiny random model with a ChatML tokenizer built here (nothing downloaded)."""

import json
import os

import pytest
from datasets import load_dataset
from trl import DatasetMixtureConfig, ModelConfig, ScriptArguments, SFTConfig, TrlParser, get_peft_config
from trl.data_utils import is_conversational

from .conftest import folders

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def parse(folder):
    parser = TrlParser((ScriptArguments, SFTConfig, ModelConfig, DatasetMixtureConfig))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        # use_cpu: this machine has no GPU (TrainingArguments refuses bf16 without one); the rest is the file.
        return parser.parse_args_and_config(["--config", "trl_sft.yaml", "--use_cpu", "true"],
                                            fail_with_unknown_args=True)
    finally:
        os.chdir(cwd)


def load(folder, script_args):
    cwd = os.getcwd()
    os.chdir(folder)  # the command runs in the folder, and dataset_name is "../NAME"
    try:
        return load_dataset(script_args.dataset_name, name=script_args.dataset_config)
    finally:
        os.chdir(cwd)


@pytest.fixture(params=["lora", "full", "qlora", "run"])
def folder(request, exports):
    (found,) = [f for f in folders(exports, "trl") if f.name == f"trl-{request.param}"]
    return found


def test_trl_sft_parses_the_config_and_loads_the_splits_it_names(folder):
    script_args, training_args, model_args, dataset_args = parse(folder)
    print(f"{folder.name}: model {model_args.model_name_or_path}, max_length {training_args.max_length}, "
          f"epochs {training_args.num_train_epochs}, lr {training_args.learning_rate}, use_peft {model_args.use_peft}, "
          f"eval {training_args.eval_strategy}")
    assert not dataset_args.datasets and script_args.dataset_name == f"../{folder.name}"
    dataset = load(folder, script_args)
    train = dataset[script_args.dataset_train_split]
    assert len(train) == sum(1 for _ in open(folder / "train.jsonl", encoding="utf-8"))
    if (folder / "validation.jsonl").exists():
        assert str(training_args.eval_strategy) != "IntervalStrategy.NO" and training_args.eval_strategy != "no"
        assert script_args.dataset_test_split == "validation"
        assert len(dataset["validation"]) == sum(1 for _ in open(folder / "validation.jsonl", encoding="utf-8"))
    else:
        assert training_args.eval_strategy == "no"
    assert script_args.dataset_test_split != "test" or training_args.eval_strategy == "no"
    for row in train:
        assert is_conversational(row) and set(row) == {"prompt", "completion"}
    assert training_args.completion_only_loss is True
    if folder.name.endswith("full"):
        assert not model_args.use_peft and get_peft_config(model_args) is None
    else:
        peft_config = get_peft_config(model_args)
        assert peft_config.r == 16 and peft_config.target_modules == "all-linear"
        assert model_args.load_in_4bit is folder.name.endswith("qlora")


def tiny_model_and_tokenizer(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|im_start|>", "<|im_end|>", "<pad>", "<unk>"]
    words = sorted({w for text in texts for w in text.replace("\n", " \n ").split(" ")} | {"\n", "system", "user",
                                                                                             "assistant"})
    vocab = {token: i for i, token in enumerate(specials + [w for w in words if w])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<|im_end|>", bos_token=None, additional_special_tokens=specials[:2])
    tokenizer.chat_template = CHATML
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=vocab["<pad>"], eos_token_id=vocab["<|im_end|>"])
    return LlamaForCausalLM(config), tokenizer


def test_sft_trainer_trains_on_the_completion_only(exports, tmp_path):
    from trl import SFTTrainer

    folder = exports / "trl-lora"
    script_args, training_args, _, _ = parse(folder)
    dataset = load(folder, script_args)
    texts = [m["content"] for split in dataset.values() for row in split for m in row["prompt"] + row["completion"]]
    model, tokenizer = tiny_model_and_tokenizer(texts)
    args = SFTConfig(output_dir=str(tmp_path), max_length=training_args.max_length, max_steps=1,
                     per_device_train_batch_size=2, completion_only_loss=training_args.completion_only_loss,
                     eval_strategy="no", report_to="none", use_cpu=True, save_strategy="no",
                     bf16=False, fp16=False)
    trainer = SFTTrainer(model=model, processing_class=tokenizer, args=args,
                         train_dataset=dataset[script_args.dataset_train_split],
                         eval_dataset=dataset[script_args.dataset_test_split])
    row = trainer.train_dataset[0]
    # TRL 1.16 masks the prompt in `labels` (-100); earlier versions kept a `completion_mask`
    if "labels" in row:
        completion = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    else:
        completion = [t for t, m in zip(row["input_ids"], row["completion_mask"]) if m]
    first = json.loads((folder / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    decoded = tokenizer.decode(completion)
    print(f"completion tokens of the first record: {decoded!r}")
    assert first["completion"][0]["content"].split()[0] in decoded and "Plain" not in decoded
    result = trainer.train()
    print(f"one training step on a tiny random model: loss {result.training_loss:.3f}")
    assert result.global_step == 1
