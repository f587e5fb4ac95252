"""Train the embedded tokenizer and GPT-2-architecture base model.

Stages (each reads the previous one's files, so the GPU stage can run on another machine):

1. ``tokenize``: train a byte-level BPE tokenizer on ``train.txt`` and write the token ids of
   train and valid as uint16 ``.npy`` arrays (documents joined by ``<|endoftext|>``).
2. ``fit``: train ``GPT2LMHeadModel`` from scratch on those ids for a time budget, evaluate on
   valid, keep the best checkpoint as a standard Hugging Face model folder (fp16 safetensors,
   loads with ``AutoModelForCausalLM.from_pretrained``) with ``training_log.json``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

EOS = "<|endoftext|>"


def tokenize(text_dir: Path, out_dir: Path, vocab_size: int = 8192) -> dict:
    """Train the BPE tokenizer; save it and the uint16 token arrays into ``out_dir``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
    )
    tok.train([str(text_dir / "train.txt")], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS
    )
    fast.model_max_length = 256
    fast.save_pretrained(out_dir / "tokenizer")
    eos_id = tok.token_to_id(EOS)
    stats = {}
    for split in ["train", "valid"]:
        docs = (text_dir / f"{split}.txt").read_text().split("\n\n")
        ids: list[int] = []
        for enc in tok.encode_batch(docs):
            ids.extend(enc.ids)
            ids.append(eos_id)
        np.save(out_dir / f"{split}_ids.npy", np.asarray(ids, dtype=np.uint16))
        stats[split] = {"documents": len(docs), "tokens": len(ids)}
    (out_dir / "token_stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def fit(
    data_dir: Path,
    out_dir: Path,
    minutes: float,
    seed: int = 0,
    n_layer: int = 6,
    n_embd: int = 256,
    n_head: int = 8,
    block: int = 256,
    batch: int = 128,
    lr: float = 2e-3,
    eval_every: int = 250,
) -> dict:
    """Train for ``minutes`` of wall time; the best-validation checkpoint lands in ``out_dir``."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(data_dir / "tokenizer")
    train = torch.from_numpy(np.load(data_dir / "train_ids.npy").astype(np.int64))
    valid = torch.from_numpy(np.load(data_dir / "valid_ids.npy").astype(np.int64))
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=block,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        resid_pdrop=0.1,
        embd_pdrop=0.1,
        attn_pdrop=0.1,
    )
    model = GPT2LMHeadModel(config).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
        fused=device == "cuda",
    )
    gen = torch.Generator().manual_seed(seed)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")

    def batch_of(data: torch.Tensor, size: int) -> torch.Tensor:
        starts = torch.randint(0, len(data) - block - 1, (size,), generator=gen)
        return torch.stack([data[s : s + block] for s in starts]).to(device)

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        losses = []
        n_blocks = min(200, (len(valid) - 1) // block)
        for i in range(0, n_blocks, 50):
            x = torch.stack(
                [valid[j * block : (j + 1) * block] for j in range(i, min(i + 50, n_blocks))]
            )
            x = x.to(device)
            with autocast:
                losses.append(model(input_ids=x, labels=x).loss.float().item())
        model.train()
        return float(np.mean(losses))

    budget = minutes * 60.0
    warmup = 300
    log = {"params": n_params, "device": device, "evals": []}
    best = math.inf
    start = time.time()
    step = tokens = 0
    model.train()
    while time.time() - start < budget:
        # Cosine decay on wall time: the budget, not a step count, is what we fix.
        frac = (time.time() - start) / budget
        lr_now = (
            lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        )
        for group in opt.param_groups:
            group["lr"] = lr_now
        x = batch_of(train, batch)
        with autocast:
            loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += x.numel()
        if step % eval_every == 0 or time.time() - start >= budget:
            val = evaluate()
            log["evals"].append(
                {
                    "step": step,
                    "tokens": tokens,
                    "train_loss": loss.item(),
                    "valid_loss": val,
                    "seconds": round(time.time() - start, 1),
                }
            )
            print(json.dumps(log["evals"][-1]), flush=True)
            if val < best:
                best = val
                model.to(torch.float16).save_pretrained(out_dir, safe_serialization=True)
                model.to(torch.float32)
                tokenizer.save_pretrained(out_dir)
    log.update(
        steps=step,
        tokens_seen=tokens,
        best_valid_loss=best,
        best_valid_perplexity=math.exp(best),
        seconds=round(time.time() - start, 1),
    )
    (out_dir / "training_log.json").write_text(json.dumps(log, indent=2))
    return log
