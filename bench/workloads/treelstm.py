"""Workload 3: binary TreeLSTM (Tai et al. 2015, N-ary with N=2), training step.

The model recurses over a tree of plain Python ``Node`` objects; each leaf
holds a word id. Size: 16 leaves (31 nodes), vocab 500, embedding 64,
hidden 128, 5 classes at the root, SGD. Variable-size run: 50 different
random trees with 16 leaves (every one a new shape for a tracer that
specialises on the tree). Quick: 4 leaves, hidden 8, 5 trees.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from .base import Instance, Workload


class Node:
    __slots__ = ("left", "right", "word")

    def __init__(self, left=None, right=None, word=None):
        self.left, self.right, self.word = left, right, word


def random_tree(rng: random.Random, leaves: int, vocab: int) -> Node:
    if leaves == 1:
        return Node(word=rng.randrange(vocab))
    k = rng.randint(1, leaves - 1)
    return Node(random_tree(rng, k, vocab), random_tree(rng, leaves - k, vocab))


def balanced_tree(rng: random.Random, leaves: int, vocab: int) -> Node:
    if leaves == 1:
        return Node(word=rng.randrange(vocab))
    k = leaves // 2
    return Node(balanced_tree(rng, k, vocab), balanced_tree(rng, leaves - k, vocab))


class BinaryTreeLSTM(nn.Module):
    def __init__(self, vocab, emb, hidden, classes):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(vocab, emb)
        self.leaf = nn.Linear(emb, 3 * hidden)          # i, o, u
        self.left = nn.Linear(hidden, 5 * hidden)        # i, f_l, f_r, o, u
        self.right = nn.Linear(hidden, 5 * hidden, bias=False)
        self.classify = nn.Linear(hidden, classes)

    def node(self, tree):
        if tree.word is not None:
            x = self.embed.weight[tree.word].unsqueeze(0)
            i, o, u = self.leaf(x).chunk(3, dim=1)
            c = torch.sigmoid(i) * torch.tanh(u)
            return torch.sigmoid(o) * torch.tanh(c), c
        hl, cl = self.node(tree.left)
        hr, cr = self.node(tree.right)
        i, fl, fr, o, u = (self.left(hl) + self.right(hr)).chunk(5, dim=1)
        c = torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(fl) * cl + torch.sigmoid(fr) * cr
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, tree):
        h, _ = self.node(tree)
        return self.classify(h)


class TreeLSTMTrain(Workload):
    name = "treelstm"
    title = "TreeLSTM over Python trees, SGD"
    kind = "train"
    var_desc = "50 different trees"

    def __init__(self, quick=False):
        super().__init__(quick)
        self.leaves = 4 if quick else 16
        self.vocab, self.emb, self.hidden, self.classes = (50, 8, 8, 5) if quick else (500, 64, 128, 5)
        self.size = f"{self.leaves} leaves ({2 * self.leaves - 1} nodes), hidden {self.hidden}"
        rng = random.Random(3)
        # The main run uses one fixed tree: its shape stays the same while the
        # label changes, so the timing measures the steady state.
        tree = balanced_tree(rng, self.leaves, self.vocab)
        self.data = [(tree, torch.tensor([rng.randrange(self.classes)])) for _ in range(8)]
        self.var = [(random_tree(rng, self.leaves, self.vocab), torch.tensor([rng.randrange(self.classes)]))
                    for _ in range(5 if quick else 50)]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = BinaryTreeLSTM(self.vocab, self.emb, self.hidden, self.classes)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)

        def train_step(tree, label):
            opt.zero_grad()
            loss = F.cross_entropy(model(tree), label)
            loss.backward()
            opt.step()
            return loss

        return self.training_instance(train_step, model)


class FunctionalTreeLSTM(nn.Module):
    """The second spelling's model: plain weight matrices (``x @ W``), both
    children's states concatenated and projected by one product, the node's
    gates applied as a sum of separate ``torch.addmm`` terms for leaves."""

    def __init__(self, vocab, emb, hidden, classes):
        super().__init__()
        self.hidden = hidden
        self.emb = nn.Parameter(torch.randn(vocab, emb))
        self.w_leaf = nn.Parameter(torch.randn(emb, 3 * hidden) / emb ** 0.5)
        self.b_leaf = nn.Parameter(torch.zeros(3 * hidden))
        self.u = nn.Parameter(torch.randn(2 * hidden, 5 * hidden) / (2 * hidden) ** 0.5)
        self.b = nn.Parameter(torch.zeros(5 * hidden))
        self.w_out = nn.Parameter(torch.randn(hidden, classes) / hidden ** 0.5)
        self.b_out = nn.Parameter(torch.zeros(classes))

    def node(self, tree):
        H = self.hidden
        if tree.word is not None:
            x = self.emb[tree.word:tree.word + 1]
            iou = torch.addmm(self.b_leaf, x, self.w_leaf)
            c = torch.sigmoid(iou[:, :H]) * torch.tanh(iou[:, 2 * H:])
            return torch.sigmoid(iou[:, H:2 * H]) * torch.tanh(c), c
        hl, cl = self.node(tree.left)
        hr, cr = self.node(tree.right)
        g = torch.cat([hl, hr], 1) @ self.u + self.b
        i, fl, fr, o, u = g.split(H, 1)
        c = torch.sigmoid(i) * torch.tanh(u) + torch.sigmoid(fl) * cl + torch.sigmoid(fr) * cr
        return torch.sigmoid(o) * torch.tanh(c), c

    def forward(self, tree):
        h, _ = self.node(tree)
        return h @ self.w_out + self.b_out


class TreeLSTMFunctionalTrain(TreeLSTMTrain):
    """The second spelling: plain weights, one product over both children,
    leaves by ``torch.addmm``; 20 leaves, hidden 150, the optimizer step
    before ``zero_grad``."""

    name = "treelstm-b"
    spelling_of = "treelstm"
    title = "TreeLSTM, plain weights and concatenated children, step before zero_grad"

    def __init__(self, quick=False):
        Workload.__init__(self, quick)
        self.leaves = 4 if quick else 20
        self.vocab, self.emb, self.hidden, self.classes = (50, 8, 8, 5) if quick else (500, 100, 150, 5)
        self.size = f"{self.leaves} leaves ({2 * self.leaves - 1} nodes), hidden {self.hidden}"
        rng = random.Random(13)
        tree = random_tree(rng, self.leaves, self.vocab)
        self.data = [(tree, torch.tensor([rng.randrange(self.classes)])) for _ in range(8)]
        self.var = [(random_tree(rng, self.leaves, self.vocab), torch.tensor([rng.randrange(self.classes)]))
                    for _ in range(5 if quick else 50)]

    def instance(self) -> Instance:
        torch.manual_seed(0)
        model = FunctionalTreeLSTM(self.vocab, self.emb, self.hidden, self.classes)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)

        def train_step(tree, label):
            loss = F.cross_entropy(model(tree), label)
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss

        return self.training_instance(train_step, model)
