"""Workload 8: HuggingFace transformers GPT-2 built from a small GPT2Config, training step.

Random weights from the config (nothing is downloaded: the worker runs with
HF_HUB_OFFLINE=1). Size: 2 layers, d 128, 4 heads, vocab 1000, 128
positions, seq 64, batch 8, no dropout, SDPA attention; AdamW.
Needs the ``transformers`` package (the ``bench`` extra); without it the row
is n/a with the import error. Quick: 1 layer, d 16, vocab 50, seq 8, batch 2.
"""
from __future__ import annotations

import os

import torch

from .base import Instance, Workload, seeded


class HFGPT2Train(Workload):
    name = "hf_gpt2"
    title = "HF transformers GPT-2 (random weights), AdamW"
    kind = "train"
    needs = ("transformers",)

    def __init__(self, quick=False):
        super().__init__(quick)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        if quick:
            self.layers, self.d, self.heads, self.vocab, self.seq, self.batch = 1, 16, 2, 50, 8, 2
        else:
            self.layers, self.d, self.heads, self.vocab, self.seq, self.batch = 2, 128, 4, 1000, 64, 8
        self.size = (f"{self.layers} layers, d {self.d}, {self.heads} heads, seq {self.seq}, "
                     f"batch {self.batch}, vocab {self.vocab}")
        g = seeded(8)
        self.data = [(torch.randint(0, self.vocab, (self.batch, self.seq), generator=g),) for _ in range(8)]

    def instance(self) -> Instance:
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(vocab_size=self.vocab, n_positions=128, n_embd=self.d, n_layer=self.layers,
                         n_head=self.heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         attn_implementation="sdpa")
        torch.manual_seed(0)
        model = GPT2LMHeadModel(cfg)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def train_step(tokens):
            opt.zero_grad()
            loss = model(input_ids=tokens, labels=tokens).loss
            loss.backward()
            opt.step()
            return loss

        return self.training_instance(train_step, model)
