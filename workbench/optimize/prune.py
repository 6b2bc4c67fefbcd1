"""Magnitude pruning (zeros in place) and structured pruning (a smaller model).

``prune_magnitude`` zeroes the smallest weights across all Linear/Conv layers
(``torch.nn.utils.prune.global_unstructured``) and makes that permanent. The tensors keep
their shape: the parameter count and dense checkpoint size do not change, only the number
of non-zero weights does. That helps compression and sparse kernels, not dense speed.

``prune_structured`` removes whole output neurons (Linear) or channels (Conv) with the
smallest L2 norm and rebuilds the affected layers smaller: the producing layer loses output
rows, a BatchNorm in between loses those features, and the consuming layer loses the
matching input columns (through ``Flatten``: the matching blocks of columns). The layer
graph is found with ``torch.fx``, so any model whose forward is traceable works, not only
``nn.Sequential``; a layer is pruned only when its output flows, through element-wise ops,
pooling, BatchNorm or Flatten, into exactly one Linear/Conv (never the model's output
layer, never a residual branch).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..training.errors import OptimizationError
from ._common import as_module, count_parameters

logger = logging.getLogger(__name__)

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_PASS_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Mish,
    nn.Hardswish,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
_PASS_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.gelu,
    F.silu,
    F.leaky_relu,
    F.elu,
    torch.tanh,
    torch.sigmoid,
    F.dropout,
    F.max_pool1d,
    F.max_pool2d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
}
_PASS_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}


def prune_magnitude(model: Any, amount: float = 0.5, *, inplace: bool = False) -> nn.Module:
    """Zero the ``amount`` fraction of smallest-magnitude weights (globally, L1), permanently.

    The result has the same shapes and parameter count; ``count_nonzero`` shows the effect.
    """
    from torch.nn.utils import prune

    _check_amount(amount)
    module = as_module(model)
    target = module if inplace else copy.deepcopy(module)
    params = [(m, "weight") for m in target.modules() if isinstance(m, _WEIGHTED)]
    if not params:
        raise OptimizationError(f"{type(module).__name__} has no Linear or Conv layers to prune")
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for m, name in params:
        prune.remove(m, name)  # fold the mask into the weight: a plain tensor again
    return target


def _check_amount(amount: float) -> None:
    if not 0.0 < float(amount) < 1.0:
        raise OptimizationError(f"amount must be between 0 and 1 (exclusive), got {amount}")


@dataclass
class _Chain:
    producer: str
    consumer: str
    batchnorms: list[str] = field(default_factory=list)
    flattened: bool = False


def _producer_chain(
    node: Any, modules: dict[str, nn.Module], calls: dict[str, int]
) -> _Chain | None:
    """Follow a Linear/Conv's output to the single layer that consumes it."""
    producer = str(node.target)
    chain = _Chain(producer=producer, consumer="")
    cur = node
    while True:
        users = list(cur.users)
        if len(users) != 1:
            return None  # used twice (residual, several heads) or not at all
        user = users[0]
        if not user.args or user.args[0] is not cur:
            return None
        if user.op == "call_module":
            mod = modules[str(user.target)]
            if calls.get(str(user.target), 0) != 1:
                return None  # a module applied in several places
            if isinstance(mod, _WEIGHTED):
                if isinstance(mod, _CONV) and mod.groups != 1:
                    return None
                if isinstance(mod, _CONV) and chain.flattened:
                    return None
                chain.consumer = str(user.target)
                return chain
            if isinstance(mod, _BATCHNORM):
                if chain.flattened:
                    return None
                chain.batchnorms.append(str(user.target))
            elif isinstance(mod, nn.Flatten):
                if mod.start_dim not in (1, -3, -2) or mod.end_dim != -1:
                    return None
                chain.flattened = True
            elif not isinstance(mod, _PASS_MODULES):
                return None
        elif user.op == "call_function":
            if user.target is torch.flatten:
                start = user.args[1] if len(user.args) > 1 else user.kwargs.get("start_dim", 0)
                if start != 1:
                    return None
                chain.flattened = True
            elif user.target not in _PASS_FUNCTIONS:
                return None
        elif user.op == "call_method":
            if user.target in _FLATTEN_METHODS:
                if user.target == "flatten":
                    if (user.args[1] if len(user.args) > 1 else 0) != 1:
                        return None
                elif not (len(user.args) == 3 and user.args[2] == -1):
                    return None  # only x.view(batch, -1) style reshapes
                chain.flattened = True
            elif user.target not in _PASS_METHODS:
                return None
        else:
            return None
        cur = user


def _importance(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    w = weight.detach()
    norms: torch.Tensor = w.reshape(w.shape[0], -1).float().norm(dim=1)
    return norms


def prunable_layers(model: nn.Module) -> list[tuple[str, str]]:
    """(producer, consumer) pairs that structured pruning can shrink."""
    return [(c.producer, c.consumer) for c in _chains(model)]


def _chains(model: nn.Module) -> list[_Chain]:
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:
        raise OptimizationError(
            f"structured pruning traces the model with torch.fx, which failed for "
            f"{type(model).__name__}: {exc}"
        ) from exc
    modules = dict(model.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    chains = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        mod = modules[str(node.target)]
        if not isinstance(mod, _WEIGHTED) or calls[str(node.target)] != 1:
            continue
        if isinstance(mod, _CONV) and mod.groups != 1:
            continue
        chain = _producer_chain(node, modules, calls)
        if chain is not None:
            chains.append(chain)
    return chains


def prune_structured(
    model: Any,
    amount: float = 0.5,
    *,
    example_input: torch.Tensor | None = None,
    min_features: int = 1,
) -> nn.Module:
    """A smaller copy of ``model``: ``amount`` of the neurons/channels of every prunable
    layer removed (smallest L2 norm first) and the layers rebuilt with fewer features.

    With ``example_input`` the pruned model is run once and must give outputs of the same
    shape as the original.
    """
    _check_amount(amount)
    module = as_module(model)
    target = copy.deepcopy(module)
    chains = _chains(target)
    if not chains:
        raise OptimizationError(
            f"no layer of {type(module).__name__} can be pruned structurally: a layer needs "
            "its output to feed exactly one Linear/Conv layer (through activations, pooling, "
            "BatchNorm or Flatten); the output layer itself is never pruned"
        )
    modules = dict(target.named_modules())
    keep_out: dict[str, torch.Tensor] = {}
    keep_in: dict[str, torch.Tensor] = {}
    for chain in chains:
        producer = modules[chain.producer]
        n_out = int(producer.weight.shape[0])
        keep = max(min_features, round(n_out * (1.0 - amount)))
        if keep >= n_out:
            continue
        idx = torch.sort(torch.topk(_importance(producer), keep).indices).values
        keep_out[chain.producer] = idx
        for bn in chain.batchnorms:
            keep_out[bn] = idx
        consumer = modules[chain.consumer]
        if chain.flattened and isinstance(consumer, nn.Linear):
            per = consumer.in_features // n_out
            if per * n_out != consumer.in_features:
                continue
            cols = (idx.unsqueeze(1) * per + torch.arange(per)).reshape(-1)
            keep_in[chain.consumer] = cols
        else:
            keep_in[chain.consumer] = idx
    if not keep_out:
        raise OptimizationError(
            f"amount={amount} removes no neuron or channel (layers are too narrow)"
        )
    before = count_parameters(target)
    for name in set(keep_out) | set(keep_in):
        old = modules[name]
        new = _rebuild(old, keep_out.get(name), keep_in.get(name))
        target.set_submodule(name, new)
    after = count_parameters(target)
    logger.info(
        "structured pruning: %d layer(s) narrowed, parameters %d -> %d",
        len(keep_out),
        before,
        after,
    )
    if example_input is not None:
        with torch.no_grad():
            was = module.training
            module.eval()
            target.eval()
            ref = module(example_input)
            out = target(example_input)
            module.train(was)
            target.train(was)
        if ref.shape != out.shape:
            raise OptimizationError(
                f"the pruned model's output shape {tuple(out.shape)} differs from the "
                f"original's {tuple(ref.shape)}"
            )
    return target


def _rebuild(
    old: nn.Module, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None
) -> nn.Module:
    """A copy of ``old`` keeping output features ``out_idx`` and input features ``in_idx``."""
    device = next(iter(old.parameters()), torch.empty(0)).device
    with torch.no_grad():
        if isinstance(old, nn.Linear):
            w = old.weight
            w = w[out_idx] if out_idx is not None else w
            w = w[:, in_idx] if in_idx is not None else w
            new = nn.Linear(
                w.shape[1], w.shape[0], bias=old.bias is not None, device=device, dtype=w.dtype
            )
            new.weight.copy_(w)
            if old.bias is not None:
                new.bias.copy_(old.bias[out_idx] if out_idx is not None else old.bias)
            return new
        if isinstance(old, _CONV):
            w = old.weight
            w = w[out_idx] if out_idx is not None else w
            w = w[:, in_idx] if in_idx is not None else w
            conv = copy.deepcopy(old)
            conv.out_channels = int(w.shape[0])
            conv.in_channels = int(w.shape[1])
            conv.weight = nn.Parameter(w.clone())
            if old.bias is not None:
                conv.bias = nn.Parameter(
                    (old.bias[out_idx] if out_idx is not None else old.bias).clone()
                )
            return conv
        if isinstance(old, _BATCHNORM):
            assert out_idx is not None
            bn = copy.deepcopy(old)
            bn.num_features = len(out_idx)
            if old.affine:
                bn.weight = nn.Parameter(old.weight[out_idx].clone())
                bn.bias = nn.Parameter(old.bias[out_idx].clone())
            if old.running_mean is not None and old.running_var is not None:
                bn.running_mean = old.running_mean[out_idx].clone()
                bn.running_var = old.running_var[out_idx].clone()
            return bn
    raise OptimizationError(f"cannot rebuild layer of type {type(old).__name__}")
