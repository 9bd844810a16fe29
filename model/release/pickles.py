"""Reading the released OmniFusion pickles (`projection.pt`, in 1.0 `projection`; `special_embeddings.pt`)
without running them.

`projection.pt` is the adapter pickled as a whole module of class `models.VisualToGPTMapping`, a class from the
training code that we neither have nor want to import. A restricted unpickler maps that one class to an empty
stand-in and admits only the handful of torch classes and functions a pickled `TransformerEncoderLayer` +
`Linear` needs; any other global (os.system, builtins.eval, ...) stops the load before it is called.
Only model/release/convert.py uses this module: serving reads safetensors only.
"""

from __future__ import annotations

import pickle
import types
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from model.dialog import SPECIALS
from model.release.layouts import UNSUPPORTED_MIX

PICKLE_WARNING = (
    "warning: {path} is a Python pickle, and unpickling can run arbitrary code. Use release files only from "
    "a source you trust (huggingface.co/AIRI-Institute/OmniFusion). The converter reads it with a restricted "
    "unpickler that refuses everything but the adapter's torch modules and tensors.")

RELEASED_CLASS = "VisualToGPTMapping"
# Where the training code's own classes live in its pickles (`__main__` when saved from a notebook): another
# class from there is another adapter (the encoders-mix release has one), not an attack.
_TRAINING_MODULES = {"models", "__main__"}

# What pickling nn.TransformerEncoderLayer + nn.Linear produces (torch 1.x and 2.x). Classes are only
# instantiated with __new__ and filled with __setstate__, functions are the tensor rebuilders.
_ALLOWED = {
    "torch.nn.modules.transformer": {"TransformerEncoderLayer"},
    "torch.nn.modules.activation": {"MultiheadAttention", "ReLU"},
    "torch.nn.modules.linear": {"Linear", "NonDynamicallyQuantizableLinear"},
    "torch.nn.modules.normalization": {"LayerNorm"},
    "torch.nn.modules.dropout": {"Dropout"},
    "torch.nn.functional": {"relu"},
    "torch._utils": {"_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"},
    "collections": {"OrderedDict"},
    "builtins": {"set"},
    "__builtin__": {"set"},  # protocol-2 pickles name builtins this way
}
# Torch 1.8's name for the attention output projection, gone since.
_RENAMED = {("torch.nn.modules.linear", "_LinearWithBias"): nn.modules.linear.NonDynamicallyQuantizableLinear}


class ReleasedProjection(nn.Module):
    """Stand-in for `models.VisualToGPTMapping`: receives its pickled submodules and attributes, runs nothing."""


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if name == RELEASED_CLASS:  # `models.` in the release; `__main__.` if it was saved from a notebook
            return ReleasedProjection
        if (module, name) in _RENAMED:
            return _RENAMED[module, name]
        if name in _ALLOWED.get(module, ()):
            return super().find_class("builtins" if module == "__builtin__" else module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module.split(".")[0] in _TRAINING_MODULES:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: an adapter class of the training code other than the "
                f"single-encoder {RELEASED_CLASS} of OmniFusion-1.0 and -1.1. {UNSUPPORTED_MIX}")
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: the released adapter pickle contains only torch modules and "
            f"tensors, so this file is not the OmniFusion projection.pt (or it was tampered with)")


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


# torch.load wants a module-like object with `Unpickler` and `load` (the latter for pre-1.6 file headers).
restricted_pickle = types.SimpleNamespace(Unpickler=RestrictedUnpickler, load=_restricted_load, __name__=__name__)


@dataclass
class ReleasedAdapter:
    state: dict[str, torch.Tensor]  # transformer_layer.*, linear.*: our Adapter's keys
    width: int  # CLIP feature width the adapter reads
    heads: int
    ff: int
    dropout: float
    out: int  # LLM width it writes
    n_embeddings: int | None
    embedding_dim: int | None


def _collect_state(module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    # Walks the dicts instead of calling state_dict(): a pickle may carry state-dict hooks, and we call nothing
    # that came out of it.
    state = {prefix + k: v.detach() for k, v in module._parameters.items() if v is not None}
    skip = getattr(module, "_non_persistent_buffers_set", set())
    state.update({prefix + k: v for k, v in module._buffers.items() if v is not None and k not in skip})
    for name, child in module._modules.items():
        if child is not None:
            state.update(_collect_state(child, f"{prefix}{name}."))
    return state


def load_projection(path: str | Path) -> ReleasedAdapter:
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    if not isinstance(obj, ReleasedProjection):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a pickled {RELEASED_CLASS} module")
    layer, linear = obj._modules.get("transformer_layer"), obj._modules.get("linear")
    if not isinstance(layer, nn.TransformerEncoderLayer) or not isinstance(linear, nn.Linear):
        raise ValueError(f"{path}: expected submodules transformer_layer (TransformerEncoderLayer) and linear "
                         f"(Linear), found {', '.join(f'{k} ({type(v).__name__})' for k, v in obj._modules.items())}")
    attn = layer.self_attn
    # Our Adapter is built as the release was: post-norm, batch-first, ReLU, eps 1e-5. A layer saved with other
    # settings would load without a shape error and then compute something else, so check them here.
    relu = getattr(layer, "activation_relu_or_gelu", None) == 1 or layer.activation is torch.nn.functional.relu \
        or isinstance(layer.activation, nn.ReLU)
    settings = {"norm_first": (getattr(layer, "norm_first", False), False),
                "batch_first": (getattr(attn, "batch_first", False), True),
                "activation is relu": (relu, True),
                "layer_norm_eps": (layer.norm1.eps, 1e-5)}
    wrong = [f"{k}={got!r} (released: {want!r})" for k, (got, want) in settings.items() if got != want]
    if wrong:
        raise ValueError(f"{path}: transformer_layer differs from the released adapter: {', '.join(wrong)}")
    return ReleasedAdapter(
        state=_collect_state(obj), width=attn.embed_dim, heads=attn.num_heads, ff=layer.linear1.out_features,
        dropout=float(layer.dropout.p), out=linear.out_features,
        n_embeddings=obj.__dict__.get("n_embeddings"), embedding_dim=obj.__dict__.get("embedding_dim"))


def load_special(path: str | Path) -> dict[str, torch.Tensor]:
    """`special_embeddings.pt`: a plain dict of tensors, which torch's own weights-only unpickler reads safely."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(f"{path} is not a plain dict of tensors: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path} should hold a dict of tensors {', '.join(SPECIALS)}")
    missing, extra = [n for n in SPECIALS if n not in data], sorted(set(data) - set(SPECIALS))
    if missing or extra:
        raise ValueError(f"{path} should hold exactly {', '.join(SPECIALS)}; missing: {missing}, unexpected: {extra}")
    return {name: data[name].detach() for name in SPECIALS}
