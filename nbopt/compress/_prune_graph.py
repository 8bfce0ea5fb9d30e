"""Torch-Pruning, told what it does not know: recurrent layers, transformers' ``Conv1D``, and
which groups of channels it must leave whole.

Imported only when a structured pruning runs (it imports Torch-Pruning).

- Recurrent layers: Torch-Pruning 1.6's LSTM pruner asserts ``num_layers == 1`` and slices the
  wrong axes (``torch_pruning/pruner/function.py``, ``LSTMPruner``); it has none for GRU. Here
  hidden units are removed with every gate's rows and columns, in both directions alike, and in
  every stacked layer (each layer keeps its most important units).
- transformers' ``Conv1D`` (GPT-2's projections) holds a Linear's weight transposed.
- Groups whose pruning would change an output of the model (a classifier's width, the hidden
  size an encoder returns) are found from the traced graph and left whole, for every output
  of a tuple, dict or ``ModelOutput``; so are groups of attention projections, whose heads are
  pruned whole beforehand.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.utils import _pytree as pytree

from nbopt.errors import ConfigError

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


class RecurrentPruner(tp.pruner.function.BasePruningFunc):
    """Hidden units of ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` (without ``proj_size``).

    The output's channels are ``directions * hidden_size`` wide (directions concatenated); they
    are pruned in groups of one per direction, so both directions lose the same units.
    """

    TARGET_MODULES = nn.RNNBase

    def get_out_channels(self, layer: nn.RNNBase) -> int:
        return layer.hidden_size * _directions(layer)

    def get_in_channels(self, layer: nn.RNNBase) -> int:
        return layer.input_size

    def get_out_channel_groups(self, layer: nn.RNNBase) -> int:
        return _directions(layer)

    def prune_out_channels(self, layer: nn.RNNBase, idxs: Sequence[int]) -> nn.RNNBase:
        hidden, directions = layer.hidden_size, _directions(layer)
        per_direction = [
            sorted(i - d * hidden for i in idxs if d * hidden <= i < (d + 1) * hidden)
            for d in range(directions)
        ]
        if any(units != per_direction[0] for units in per_direction):
            raise ConfigError(
                "structured pruning would remove different hidden units from the two "
                "directions of a bidirectional recurrent layer; leave it out with prune_ignore="
            )
        removed = len(per_direction[0])
        if removed == 0:
            return layer
        last = layer.num_layers - 1
        kept: list[list[torch.Tensor]] = []
        for index in range(layer.num_layers):
            kept.append(
                [
                    _keep(hidden, per_direction[0])
                    if index == last
                    else _weakest_kept(layer, index, suffix, removed)
                    for suffix in _suffixes(layer)
                ]
            )
        gates = _GATES[layer.mode]
        for index in range(layer.num_layers):
            for direction, suffix in enumerate(_suffixes(layer)):
                units = kept[index][direction]
                rows = torch.cat([units + gate * hidden for gate in range(gates)])
                self._set(layer, f"weight_ih_l{index}{suffix}", rows, 0)
                self._set(layer, f"weight_hh_l{index}{suffix}", rows, 0)
                self._set(layer, f"weight_hh_l{index}{suffix}", units, 1)
                if layer.bias:
                    self._set(layer, f"bias_ih_l{index}{suffix}", rows, 0)
                    self._set(layer, f"bias_hh_l{index}{suffix}", rows, 0)
                if index > 0:
                    previous = torch.cat(
                        [kept[index - 1][d] + d * hidden for d in range(directions)]
                    )
                    self._set(layer, f"weight_ih_l{index}{suffix}", previous, 1)
        layer.hidden_size = hidden - removed
        return layer

    def prune_in_channels(self, layer: nn.RNNBase, idxs: Sequence[int]) -> nn.RNNBase:
        units = _keep(layer.input_size, idxs)
        for suffix in _suffixes(layer):
            self._set(layer, f"weight_ih_l0{suffix}", units, 1)
        layer.input_size = len(units)
        return layer

    def _set(self, layer: nn.RNNBase, name: str, keep: torch.Tensor, dim: int) -> None:
        # RNNBase.__setattr__ keeps the flat weight list the kernels read in step.
        setattr(layer, name, self._prune_parameter_and_grad(getattr(layer, name), keep, dim))


def _directions(layer: nn.RNNBase) -> int:
    return 2 if layer.bidirectional else 1


def _suffixes(layer: nn.RNNBase) -> list[str]:
    return ["", "_reverse"][: _directions(layer)]


def _keep(size: int, removed: Sequence[int]) -> torch.Tensor:
    dropped = set(removed)
    return torch.tensor([i for i in range(size) if i not in dropped], dtype=torch.long)


def _weakest_kept(layer: nn.RNNBase, index: int, suffix: str, removed: int) -> torch.Tensor:
    """The units of a stacked (not last) layer to keep: all but the ``removed`` of smallest
    L2 magnitude over their gates' rows."""
    hidden, gates = layer.hidden_size, _GATES[layer.mode]
    squares = torch.zeros(hidden, dtype=torch.float64)
    for name in (f"weight_ih_l{index}{suffix}", f"weight_hh_l{index}{suffix}"):
        weight = getattr(layer, name).detach().double()
        squares += weight.reshape(gates, hidden, -1).pow(2).sum((0, 2))
    order = torch.argsort(squares)
    return torch.sort(order[removed:]).values


class Conv1DPruner(tp.pruner.function.BasePruningFunc):
    """transformers' ``Conv1D``: a Linear whose weight is stored ``[in, out]``."""

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.weight.shape[1]

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.weight.shape[0]

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        keep = _keep(layer.weight.shape[1], idxs)
        layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 1)
        if layer.bias is not None:
            layer.bias = self._prune_parameter_and_grad(layer.bias, keep, 0)
        layer.nf = len(keep)
        return layer

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        keep = _keep(layer.weight.shape[0], idxs)
        layer.weight = self._prune_parameter_and_grad(layer.weight, keep, 0)
        layer.nx = len(keep)
        return layer


def customized_pruners(model: nn.Module) -> dict[type, Any]:
    """Pruners for the layer types of ``model`` Torch-Pruning lacks or gets wrong."""
    pruners: dict[type, Any] = {}
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            pruners[type(module)] = RecurrentPruner()
        elif type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
            pruners[type(module)] = Conv1DPruner()
    return pruners


class OutputRecorder:
    """An ``output_transform`` for Torch-Pruning's tracing: every tensor of the model's output
    (a tuple, dict, ``ModelOutput`` ...), remembered so that the groups reaching them can be
    found; outputs that are not tensors (a key/value cache object) are left out."""

    def __init__(self) -> None:
        self.grad_fns: set[Any] = set()

    def __call__(self, output: Any) -> list[torch.Tensor]:
        tensors = [
            leaf
            for leaf in pytree.tree_leaves(output)
            if isinstance(leaf, torch.Tensor) and leaf.grad_fn is not None
        ]
        self.grad_fns = {tensor.grad_fn for tensor in tensors}
        return tensors


def frozen_group(
    graph: tp.DependencyGraph,
    group: Any,
    outputs: set[Any],
    frozen: set[nn.Module],
    tied: list[set[nn.Module]] = (),
) -> str | None:
    """Why ``group`` must not be pruned, or None: it would change a model output
    (``outputs``: the nodes producing them), the out-channels of a module in ``frozen``, or a
    parameter shared by modules (each set of ``tied``) of which it holds only some, which
    would then need two different shapes."""
    touched = {dep.target.module for dep, _ in group}
    for dep, _ in group:
        if not graph.is_out_channel_pruning_fn(dep.handler):
            continue
        if dep.target in outputs:
            return "output"
        if dep.target.module in frozen:
            return "heads"
    if any(holders & touched and not holders <= touched for holders in tied):
        return "tied"
    return None


def output_nodes(graph: tp.DependencyGraph, recorder: OutputRecorder) -> set[Any]:
    """The graph's nodes whose result is an output of the model."""
    return {node for node in graph.module2node.values() if node.grad_fn in recorder.grad_fns}


class _Opaque(torch.autograd.Function):
    """Passes a recurrent layer's results through one autograd node whose inputs are the
    layer's input and one of its weights (so that the node exists), so that tracing sees the
    layer as one operation. Never run backward."""

    @staticmethod
    def forward(
        ctx: Any, source: torch.Tensor, weight: torch.Tensor, *results: torch.Tensor
    ) -> Any:
        return tuple(result.clone() for result in results)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> Any:  # pragma: no cover - never called
        raise RuntimeError("only for tracing")


@contextlib.contextmanager
def traceable(model: nn.Module) -> Iterator[None]:
    """``model`` as Torch-Pruning can trace it, for the block.

    - Recurrent layers run as one graph node. Traced as they are, their internal operations
      (``mkldnn_rnn_layer``, the concatenation of directions between stacked layers) become
      nodes of the graph, and Torch-Pruning 1.6 fails on them
      (``torch_pruning/dependency/index_mapping.py``, ``update_concat_index_mapping``: a
      concatenation whose input sizes it cannot infer).
    - Hugging Face models do not return a key/value cache: its concatenations fail the same way.
    """
    patched = []
    for module in model.modules():
        if isinstance(module, nn.RNNBase):
            module.forward = _opaque_forward(module.forward, module.weight_ih_l0)
            patched.append(module)
    config = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    if use_cache:
        config.use_cache = False
    try:
        yield
    finally:
        for module in patched:
            del module.forward
        if use_cache:
            config.use_cache = use_cache


def _opaque_forward(forward: Any, weight: torch.Tensor) -> Any:
    def run(input: Any, hx: Any = None) -> Any:
        if not isinstance(input, torch.Tensor):  # a PackedSequence: traced as it is
            return forward(input, hx)
        with torch.no_grad():
            output, state = forward(input, hx)
        if isinstance(state, tuple):
            output, *rest = _Opaque.apply(input, weight, output, *state)
            return output, tuple(rest)
        output, state = _Opaque.apply(input, weight, output, state)
        return output, state

    return run
