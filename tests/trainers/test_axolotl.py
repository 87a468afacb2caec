"""axolotl's own code on the axolotl exports: its config validation (axolotl.utils.config.validate_config, the
pydantic AxolotlInputConfig, as `axolotl train` runs it before loading anything) accepts axolotl.yaml, and every
record carries the fields its chat_template stanza reads."""

import json

import pytest
import yaml
from axolotl.utils.config import validate_config
from axolotl.utils.dict import DictDefault

from .conftest import folders

# What validate_config is told of the machine: this one has no GPU, so a typical training GPU is described
# (bf16-capable, one device); nothing is loaded.
CAPABILITIES = {"bf16": True, "fp8": False, "n_gpu": 1, "n_node": 1, "compute_capability": "sm_80"}
ENV_CAPABILITIES = {"torch_version": "2.13.0"}


@pytest.fixture(params=["lora", "full", "qlora", "run"])
def folder(request, exports):
    (found,) = [f for f in folders(exports, "axolotl") if f.name == f"axolotl-{request.param}"]
    return found


def test_axolotl_validates_the_config(folder, monkeypatch):
    monkeypatch.chdir(folder)
    raw = yaml.safe_load((folder / "axolotl.yaml").read_text(encoding="utf-8"))
    cfg = validate_config(DictDefault(raw), capabilities=CAPABILITIES, env_capabilities=ENV_CAPABILITIES)
    print(f"{folder.name}: adapter {cfg.adapter}, sequence_len {cfg.sequence_len}, num_epochs {cfg.num_epochs}, "
          f"lr {cfg.learning_rate}, chat_template {cfg.chat_template}, datasets "
          f"{[d['path'] for d in cfg.datasets]}, test_datasets {[d['path'] for d in cfg.test_datasets or []]}")
    assert cfg.sequence_len == raw["sequence_len"] and cfg.adapter == raw.get("adapter")
    for stanza in (cfg.datasets or []) + (cfg.test_datasets or []):
        assert stanza["type"] == "chat_template" and stanza["path"] != "test.jsonl"
        mapping = stanza["message_property_mappings"]
        for line in (folder / stanza["path"]).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            for message in record[stanza["field_messages"]]:
                assert set(message) == {mapping["role"], mapping["content"]}
