"""The benchmark workloads, in the order of the issue (one module each).

``WORKLOADS`` maps a row name to its :class:`~bench.workloads.base.Workload`
class; ``get(name, quick)`` builds one. Workload 9 (elementwise chains) has
two rows, so there are 12 rows for the 11 workloads.
"""
from __future__ import annotations

from .base import Instance, Workload
from .gpt import GPTTrain
from .hf_gpt2 import HFGPT2Train
from .lstm import LSTMTrain
from .mlp import MLPTrain
from .overhead import Overhead
from .pointwise import PointwiseCheap, PointwiseTranscendental
from .resnet import ResNetTrain
from .rl import A2CTrain
from .rnn_control import ControlRNNTrain
from .side_effects import SideEffectsTrain
from .treelstm import TreeLSTMTrain

WORKLOADS: dict[str, type[Workload]] = {
    cls.name: cls
    for cls in (MLPTrain, LSTMTrain, TreeLSTMTrain, ControlRNNTrain, ResNetTrain, GPTTrain,
                SideEffectsTrain, HFGPT2Train, PointwiseTranscendental, PointwiseCheap, Overhead,
                A2CTrain)
}


def get(name: str, quick: bool = False) -> Workload:
    return WORKLOADS[name](quick)


__all__ = ["WORKLOADS", "Workload", "Instance", "get"]
