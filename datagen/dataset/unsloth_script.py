"""The training script the Unsloth export writes (train_unsloth.py), as a template for `str.format`: Unsloth's
documented steps (FastLanguageModel.from_pretrained, get_peft_model, get_chat_template, apply_chat_template to
text, TRL's SFTTrainer, train_on_responses_only). Filled in by `datagen.dataset.trainers`."""

UNSLOTH_SCRIPT = '''\
"""Fine-tune {base_model} with Unsloth on train.jsonl{validation_note}. Written by datagen.

Run it from this folder on a machine with a GPU and Unsloth installed: python train_unsloth.py
The held-out test split is not read here: evaluate the trained model on it afterwards.
"""

from unsloth import FastLanguageModel
from unsloth.chat_templates import get_chat_template, train_on_responses_only

from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

BASE_MODEL = {base_model!r}
MAX_SEQ_LENGTH = {sequence_len}  # measured by datagen: the longest record, with margin, rounded up to 256
CHAT_TEMPLATE = {template!r}  # None: the base model's own chat template, from its tokenizer
LOAD_IN_4BIT = {load_in_4bit}  # QLoRA when True
HAS_VALIDATION = {has_validation}

model, tokenizer = FastLanguageModel.from_pretrained(
    model_name=BASE_MODEL, max_seq_length=MAX_SEQ_LENGTH, load_in_4bit=LOAD_IN_4BIT, dtype=None)
model = FastLanguageModel.get_peft_model(
    model, r={lora_r}, lora_alpha={lora_alpha}, lora_dropout=0,
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    bias="none", use_gradient_checkpointing="unsloth", random_state=3407)
if CHAT_TEMPLATE is not None:
    tokenizer = get_chat_template(tokenizer, chat_template=CHAT_TEMPLATE)


def turn_markers(tokenizer):
    """The text that opens a user turn and an assistant turn in this chat template (what train_on_responses_only
    masks by), read from the template itself: a probe conversation is rendered, and the text between one turn's
    content and the next, less the end-of-turn marker, opens the next turn."""
    user, reply, user2, reply2 = "@@datagen-user@@", "@@datagen-reply@@", "@@datagen-user2@@", "@@datagen-reply2@@"
    text = tokenizer.apply_chat_template(
        [{{"role": "user", "content": user}}, {{"role": "assistant", "content": reply}},
         {{"role": "user", "content": user2}}, {{"role": "assistant", "content": reply2}}], tokenize=False)
    end_of_turn = text[text.index(reply2) + len(reply2):]
    opens_reply = text[text.index(user) + len(user):text.index(reply)]
    opens_user = text[text.index(reply) + len(reply):text.index(user2)]
    if end_of_turn and opens_reply.startswith(end_of_turn) and opens_user.startswith(end_of_turn):
        opens_reply, opens_user = opens_reply[len(end_of_turn):], opens_user[len(end_of_turn):]
    return opens_user, opens_reply


def to_text(batch):
    return {{"text": [tokenizer.apply_chat_template(messages, tokenize=False) for messages in batch["messages"]]}}


data_files = {{"train": "train.jsonl"}}
if HAS_VALIDATION:
    data_files["validation"] = "validation.jsonl"
dataset = load_dataset("json", data_files=data_files).map(to_text, batched=True, remove_columns=["messages"])

trainer = SFTTrainer(
    model=model,
    processing_class=tokenizer,
    train_dataset=dataset["train"],
    eval_dataset=dataset["validation"] if HAS_VALIDATION else None,
    args=SFTConfig(
        dataset_text_field="text",
        max_length=MAX_SEQ_LENGTH,
        num_train_epochs={epochs!r},
        learning_rate={learning_rate!r},
        per_device_train_batch_size=1,
        gradient_accumulation_steps=8,
        lr_scheduler_type="cosine",
        warmup_ratio=0.05,
        logging_steps=10,
        eval_strategy="epoch" if HAS_VALIDATION else "no",
        save_strategy="epoch",
        output_dir={output_dir!r},
        report_to="none",
        seed=3407,
    ),
)
instruction_part, response_part = turn_markers(tokenizer)
print(f"training on the responses only: user turns open with {{instruction_part!r}}, "
      f"assistant turns with {{response_part!r}}")
trainer = train_on_responses_only(trainer, instruction_part=instruction_part, response_part=response_part)
trainer.train()
model.save_pretrained({adapter_dir!r})
tokenizer.save_pretrained({adapter_dir!r})
'''
