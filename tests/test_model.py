"""The prepared default model loads in transformers and answers a fixed question."""

import json

import pytest

from reproduce_vllm_lmcache import config
from reproduce_vllm_lmcache.workspace import model


@pytest.fixture(scope="module")
def model_dir():
    path = config.path("REPRO_MODEL")
    if config.get("REPRO_MODEL") != config.defaults()["REPRO_MODEL"]:
        pytest.skip("REPRO_MODEL is not the default prepared model")
    assert model.is_prepared(path), f"{path} not prepared: run scripts/setup.sh"
    return path


def test_prepared_model_is_plain_llama_safetensors(model_dir) -> None:
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in cfg
    assert (cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["head_dim"]) == (30, 3, 64)
    assert list(model_dir.glob("*.safetensors"))


def test_prepared_model_answers_greedily(model_dir) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lm = AutoModelForCausalLM.from_pretrained(model_dir)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")["input_ids"]
    out = lm.generate(ids, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
