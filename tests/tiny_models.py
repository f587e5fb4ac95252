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


def prompts(padded: bool, rows: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) (rows, 7), left-padded rows of different lengths when ``padded`` (the last
    ``rows`` of three: one row is padded too)."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(2, VOCAB, (3, 7), generator=generator)
    mask = torch.ones_like(ids)
    if padded:
        for row, pad in enumerate((0, 3, 5)):
            mask[row, :pad] = 0
            ids[row, :pad] = PAD
    return ids[-rows:], mask[-rows:]


def teacher_forced_logits(next_token, ids, mask, steps: int, before_step=None):
    """Logits (B, steps, V) of a loop that feeds back each step's argmax, and the last cache;
    ``before_step(step)`` runs before each step (to change the model mid-reply)."""
    width = ids.shape[1]
    full = torch.cat([mask, mask.new_ones((mask.shape[0], steps))], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    step_ids, cache, out = ids, None, []
    with torch.no_grad():
        for step in range(steps):
            if before_step is not None:
                before_step(step)
            logits, cache = next_token(step_ids, full[:, : width + step], positions, cache)
            out.append(logits)
            step_ids, positions = logits.argmax(-1)[:, None], positions[:, -1:] + 1
    return torch.stack(out, dim=1), cache


def assert_same_logits(lean: torch.Tensor, plain: torch.Tensor) -> None:
    """Logits (B, steps, V) of the lean decode step equal to the model's forward: bit for bit
    for several rows (the step multiplies by the model's own weights, as the forward does); for
    one row, which reads input-major copies of them, to float32 rounding with the same argmax
    everywhere (its matmuls sum in another order)."""
    if lean.shape[0] > 1:
        assert torch.equal(lean, plain)
        return
    torch.testing.assert_close(lean, plain, rtol=1e-5, atol=1e-5)
    assert torch.equal(lean.argmax(-1), plain.argmax(-1))


def count_prompt_rows(monkeypatch, model_class) -> list[int]:
    """The rows of every prompt pass (an input longer than one token) through
    ``model_class.forward`` from now on, in call order."""
    rows, run = [], model_class.forward

    def counted(self, input_ids=None, **kwargs):
        if input_ids is not None and input_ids.shape[1] > 1:
            rows.append(input_ids.shape[0])
        return run(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(model_class, "forward", counted)
    return rows
