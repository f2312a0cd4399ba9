"""Workload 6: 2-layer GPT-style decoder built from torch.nn modules, training step.

Token + position embeddings, 2 pre-LayerNorm blocks (nn.MultiheadAttention
with a causal mask, GELU MLP 4x), tied-free LM head; AdamW.
Size: vocab 1000, d 128, 4 heads, seq 64, batch 8, no dropout.
Variable-size run: sequence lengths 16, 32, 48, 64, 80.
Quick: vocab 50, d 16, 2 heads, seq 8, batch 2.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Instance, Workload, fresh_function, params_state, seeded


class DecoderBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=0.0, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, mask):
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, attn_mask=mask, need_weights=False)
        x = x + a
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab, d, heads, layers, max_len):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(DecoderBlock(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        T = idx.shape[1]
        pos = torch.arange(T, device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        mask = torch.triu(torch.full((T, T), float("-inf"), device=idx.device), diagonal=1)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln(x))


class GPTTrain(Workload):
    name = "gpt"
    title = "2-layer GPT decoder (nn modules), AdamW"
    kind = "train"
    var_desc = "seq 16..80"

    def __init__(self, quick=False):
        super().__init__(quick)
        if quick:
            self.vocab, self.d, self.heads, self.seq, self.batch = 50, 16, 2, 8, 2
            lengths = (4, 8, 12)
        else:
            self.vocab, self.d, self.heads, self.seq, self.batch = 1000, 128, 4, 64, 8
            lengths = (16, 32, 48, 64, 80)
        self.max_len = max(lengths) + 1
        self.size = f"d {self.d}, {self.heads} heads, seq {self.seq}, batch {self.batch}, vocab {self.vocab}"
        g = seeded(6)

        def batch(T):
            return (torch.randint(0, self.vocab, (self.batch, T + 1), generator=g),)

        self.data = [batch(self.seq) for _ in range(8)]
        self.var = [batch(T) for T in lengths]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = TinyGPT(self.vocab, self.d, self.heads, 2, self.max_len)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def train_step(tokens):
            opt.zero_grad()
            logits = model(tokens[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
            loss.backward()
            opt.step()
            return loss

        return Instance(step=fresh_function(train_step),
                        args=lambda i: self.data[i % len(self.data)],
                        state=lambda: params_state(model),
                        var_args=self.var)
