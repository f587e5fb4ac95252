"""Tiny random models built in memory for tests that need a model of a given architecture."""

import torch

VOCAB, PAD, EOS = 97, 0, 1


def tiny_llama(initializer_range: float = 0.02):
    """A 2-layer Llama with grouped-query attention (4 query heads over 2 key/value heads),
    SDPA, seeded; a larger ``initializer_range`` gives sharper attention."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=PAD,
        eos_token_id=EOS,
        attn_implementation="sdpa",
        initializer_range=initializer_range,
    )
    return LlamaForCausalLM(config).eval()
