"""Write the embedded model's card (README.md) with data, licences, size, loss and samples."""

from __future__ import annotations

import json
import math
from pathlib import Path

SAMPLE_PROMPTS = [
    "The hotel was",
    "I think working from home is",
    "Once upon a time, a young fox",
    "Could you help me plan a trip?",
    "What is the best way to learn a language?",
    "My new phone",
]


def samples(model_dir: Path, seed: int) -> list[tuple[str, str]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    for prompt in SAMPLE_PROMPTS:
        ids = tok(prompt, return_tensors="pt").input_ids
        gen = model.generate(
            ids,
            max_new_tokens=40,
            do_sample=True,
            top_p=0.9,
            temperature=0.8,
            pad_token_id=tok.eos_token_id,
        )
        out.append((prompt, tok.decode(gen[0, ids.shape[1] :], skip_special_tokens=True).strip()))
    return out


def write(model_dir: Path, manifest_path: Path, seed: int = 0) -> None:
    manifest = json.loads(manifest_path.read_text())
    log = json.loads((model_dir / "training_log.json").read_text())
    config = json.loads((model_dir / "config.json").read_text())
    size_mb = sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) / 1e6
    rows = "\n".join(
        f"| {name} | {info['version']} | {info['licence']} |"
        for name, info in manifest["packages"].items()
    )
    src = "\n".join(
        f"| {name} | {v['documents']:,} | {v['characters']:,} |"
        for name, v in manifest["sources"].items()
    )
    best = min(log["evals"], key=lambda e: e["valid_loss"])
    gens = "\n".join(f"- **{p}** {g}" for p, g in samples(model_dir, seed))
    text = f"""# MORL Studio embedded base model

A small GPT-2-architecture causal language model trained from scratch for MORL Studio, so that
the app and the tests run offline with no model hub. It writes short, simple English: reviews,
requests and replies, answers, story starts, opinions. It is a teaching model, not a
knowledgeable one. Rebuild it with `python scripts/build_embedded_model.py` (seeded).

## Size
- {log["params"]:,} parameters; {config["n_layer"]} layers, width {config["n_embd"]}, {config["n_head"]} heads,
  context {config["n_positions"]} tokens, byte-level BPE vocabulary of {config["vocab_size"]:,}.
- Weights stored in fp16 safetensors: {size_mb:.1f} MB. Load in fp32 on CPU.

## Training
- Device: {log["device"]}; the run went {log["steps"]:,} steps ({log["tokens_seen"]:,} tokens, {log["seconds"]:.0f} s);
  the kept checkpoint is the one with the best validation loss: step {best["step"]:,}, {best["tokens"]:,} tokens seen.
- Validation loss {best["valid_loss"]:.3f} nats/token (perplexity {math.exp(best["valid_loss"]):.2f}) on held-out documents.
  Held-out documents are mostly grammar text, which is easy; later steps overfit the small
  packaged text (validation loss rose), which is why the early checkpoint is kept.
- AdamW (betas 0.9/0.95, weight decay 0.1), cosine learning-rate decay over the time budget, seed {seed}.

## Data and licences
Packaged sources, fetched with `apt-get download` and unpacked with `dpkg-deb -x`:

| package | version | licence |
|---|---|---|
{rows}

| source | documents | characters |
|---|---|---|
{src}

`grammar` is text written by this project's seeded grammar (`scripts/embedded_model/grammar.py`),
under the project's licence. Packaged documents are repeated {manifest.get("natural_repeats", 1)}x in training.

## Sample generations (top-p 0.9, temperature 0.8, seed {seed})
{gens}

## Limits
Tiny and trained on little text: it repeats itself, drifts off topic on long replies and knows
few facts. Part of its text is templated, so its replies have a recognisable style.
"""
    (model_dir / "README.md").write_text(text)
