"""The benchmark workloads, in the order of the issue (one module each).

``WORKLOADS`` maps a row name to its :class:`~bench.workloads.base.Workload`
class; ``get(name, quick)`` builds one. Workload 9 (elementwise chains) has
two rows, so there are 12 rows for the 11 workloads; mlp, lstm, treelstm,
resnet and gpt have a second spelling each (``<name>-b``: the same kind of
model written differently, its class's ``spelling_of`` names the first), so
17 rows in all.
"""
from __future__ import annotations

from .base import Instance, Workload
from .gpt import GPTHandTrain, GPTTrain
from .hf_gpt2 import HFGPT2Train
from .lstm import LSTMLinearTrain, LSTMTrain
from .mlp import MLPFunctionalTrain, MLPTrain
from .overhead import Overhead
from .pointwise import PointwiseCheap, PointwiseTranscendental
from .resnet import ResNetFunctionalTrain, ResNetTrain
from .rl import A2CTrain
from .rnn_control import ControlRNNTrain
from .side_effects import SideEffectsTrain
from .treelstm import TreeLSTMFunctionalTrain, TreeLSTMTrain

WORKLOADS: dict[str, type[Workload]] = {
    cls.name: cls
    for cls in (MLPTrain, MLPFunctionalTrain, LSTMTrain, LSTMLinearTrain, TreeLSTMTrain,
                TreeLSTMFunctionalTrain, ControlRNNTrain, ResNetTrain, ResNetFunctionalTrain,
                GPTTrain, GPTHandTrain, SideEffectsTrain, HFGPT2Train, PointwiseTranscendental,
                PointwiseCheap, Overhead, A2CTrain)
}


def get(name: str, quick: bool = False) -> Workload:
    return WORKLOADS[name](quick)


__all__ = ["WORKLOADS", "Workload", "Instance", "get"]
