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

from .base import Instance, Workload, seeded


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

        return self.training_instance(train_step, model)


class HandAttentionBlock(nn.Module):
    """The second spelling's block: attention written out (one fused qkv
    ``nn.Linear``, heads by view/transpose, scores by ``einsum``, a boolean
    causal mask, probabilities times values by ``@`` on 4-D tensors),
    ``F.layer_norm`` on plain parameters, the MLP with tanh-GELU."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1_w, self.ln1_b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))
        self.ln2_w, self.ln2_b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.fc = nn.Linear(d, 4 * d)
        self.fc_out = nn.Linear(4 * d, d)

    def forward(self, x, causal):
        B, T, D = x.shape
        H = self.heads
        h = F.layer_norm(x, (D,), self.ln1_w, self.ln1_b)
        q, k, v = self.qkv(h).split(D, dim=-1)
        q = q.view(B, T, H, D // H).transpose(1, 2)
        k = k.view(B, T, H, D // H).transpose(1, 2)
        v = v.view(B, T, H, D // H).transpose(1, 2)
        att = torch.einsum("bhqd,bhkd->bhqk", q, k) * (1.0 / (D // H) ** 0.5)
        att = att.masked_fill(~causal[:T, :T], float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.proj(y)
        h = F.layer_norm(x, (D,), self.ln2_w, self.ln2_b)
        return x + self.fc_out(F.gelu(self.fc(h), approximate="tanh"))


class HandGPT(nn.Module):
    def __init__(self, vocab, d, heads, layers, max_len):
        super().__init__()
        self.tok = nn.Parameter(torch.randn(vocab, d) * 0.02)
        self.pos = nn.Parameter(torch.randn(max_len, d) * 0.02)
        self.blocks = nn.ModuleList(HandAttentionBlock(d, heads) for _ in range(layers))
        self.ln_w, self.ln_b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))
        self.register_buffer("causal", torch.tril(torch.ones(max_len, max_len, dtype=torch.bool)))

    def forward(self, idx):
        T = idx.shape[1]
        x = self.tok[idx] + self.pos[:T]
        for block in self.blocks:
            x = block(x, self.causal)
        x = F.layer_norm(x, (x.shape[-1],), self.ln_w, self.ln_b)
        return x @ self.tok.t()  # tied output head


class GPTHandTrain(GPTTrain):
    """The second spelling: hand-written attention, plain-parameter layer
    norms, a tied head, d 192 with 6 heads at seq 48, batch 12; the
    optimizer step before ``zero_grad``."""

    name = "gpt-b"
    spelling_of = "gpt"
    title = "2-layer GPT decoder, hand-written attention (einsum, 4-D @), AdamW, step before zero_grad"
    var_desc = "seq 12..72"

    def __init__(self, quick=False):
        Workload.__init__(self, quick)
        if quick:
            self.vocab, self.d, self.heads, self.seq, self.batch = 50, 16, 2, 8, 2
            lengths = (4, 8, 12)
        else:
            self.vocab, self.d, self.heads, self.seq, self.batch = 1000, 192, 6, 48, 12
            lengths = (12, 24, 48, 60, 72)
        self.max_len = max(lengths) + 1
        self.size = f"d {self.d}, {self.heads} heads, seq {self.seq}, batch {self.batch}, vocab {self.vocab}"
        g = seeded(16)

        def batch(T):
            return (torch.randint(0, self.vocab, (self.batch, T + 1), generator=g),)

        self.data = [batch(self.seq) for _ in range(8)]
        self.var = [batch(T) for T in lengths]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = HandGPT(self.vocab, self.d, self.heads, 2, self.max_len)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def train_step(tokens):
            logits = model(tokens[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss

        return self.training_instance(train_step, model)
