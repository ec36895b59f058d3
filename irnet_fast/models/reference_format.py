"""State dicts in the reference implementation's layout, both ways.

The reference saves ``torch.save(model.module.state_dict())`` of its ``resnet50_cam.Net``
(``res50_cam.pth``) and ``resnet50_irn.AffinityDisplacementLoss`` (``res50_irn.pth``). Those
networks register the same modules under several names, and ``state_dict()`` lists each name:

- the backbone as ``resnet50.*`` (torchvision names: ``conv1``, ``bn1``, ``layer1..4``), again as
  ``stage<s>.<i>.*`` (the ``nn.Sequential`` stages) and as ``backbone.<s-1>.<i>.*`` (the
  ``nn.ModuleList`` of the stages). CAM: stage1 = (conv1, bn1, relu, maxpool, layer1), stages 2-4
  = layer2-4. IRNet: stage1 = (conv1, bn1, relu, maxpool), stages 2-5 = layer1-4;
- CAM: ``classifier.weight``, again as ``newly_added.0.weight``;
- IRNet: ``fc_edge1..6.*`` and ``fc_dp1..7.*``, again as ``edge_layers.<k-1>.*`` and
  ``dp_layers.<k-1>.*``; ``mean_shift.running_mean``, again as ``fc_dp7.4.running_mean`` (the
  mean shift is the last module of ``fc_dp7`` there). Files of the reference's first release have
  only ``fc_dp7.4.*`` (its mean shift was a BatchNorm: ``running_var`` and
  ``num_batches_tracked`` come with it) and the training module's buffers ``path_indices<i>``,
  ``disp_target`` (``ind_from``, ``ind_to`` in that release): accepted and dropped.

irnet_fast's :class:`~irnet_fast.models.CAMNet` and :class:`~irnet_fast.models.IRNet` hold each
module once, under the reference's names except for the backbone prefix (``backbone.*`` here is
``resnet50.*`` there), so the conversion is a renaming. :func:`from_reference_state_dict` takes
the canonical name of every tensor (an alias only where the canonical one is absent) and rejects
any key it does not know, naming it; :func:`to_reference_state_dict` writes every name the
reference's ``state_dict()`` has, so the reference loads the result with ``strict=True``.
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Tuple

from torch import Tensor

from .backbone import _short

__all__ = ["is_reference_state_dict", "reference_kind", "from_reference_state_dict",
           "to_reference_state_dict", "ReferenceFormatError"]

# members of each reference stage, by Sequential index (None: a module without state)
_STAGES = {
    "cam": (("conv1", "bn1", None, None, "layer1"), ("layer2",), ("layer3",), ("layer4",)),
    "irn": (("conv1", "bn1", None, None), ("layer1",), ("layer2",), ("layer3",), ("layer4",)),
}
_HEAD_LISTS = {"cam": (("classifier", "newly_added", 1),),
               "irn": (("fc_edge", "edge_layers", 6), ("fc_dp", "dp_layers", 7))}
_MEAN_SHIFT = "mean_shift.running_mean"
_MEAN_SHIFT_ALIAS = "fc_dp7.4.running_mean"
# buffers of the reference's training module and of its first-release mean shift: not weights
_DROPPED = re.compile(r"^(path_indices\d+|disp_target|ind_from|ind_to|"
                      r"(fc_dp7|dp_layers\.6)\.4\.(running_var|num_batches_tracked))$")
_BACKBONE = "backbone."
_RESNET = "resnet50."


class ReferenceFormatError(ValueError):
    """A state dict with keys neither irnet_fast nor the reference writes."""


def is_reference_state_dict(state: Mapping[str, object]) -> bool:
    """True for a state dict in the reference's layout (it has ``resnet50.*`` keys)."""
    return any(isinstance(k, str) and k.startswith(_RESNET) for k in state)


def reference_kind(state: Mapping[str, object]) -> str:
    """``"irn"`` for an IRNet state dict (either layout), else ``"cam"``."""
    return "irn" if any(k.startswith(("fc_edge", "fc_dp", "edge_layers.", "dp_layers.", "stage5.", "mean_shift."))
                        for k in state) else "cam"


def _heads(kind: str) -> List[Tuple[str, str]]:
    """``(our prefix, reference list prefix)`` of every head module, e.g. ``("fc_dp3.", "dp_layers.2.")``."""
    out = []
    for name, listed, count in _HEAD_LISTS[kind]:
        for k in range(count):
            ours = name if count == 1 else f"{name}{k + 1}"
            out.append((ours + ".", f"{listed}.{k}."))
    return out


def _reference_names(key: str, kind: str) -> List[str]:
    """Every reference name of our ``key``, the canonical one first."""
    if key.startswith(_BACKBONE):
        rest = key[len(_BACKBONE):]
        top, _, tail = rest.partition(".")
        names = [_RESNET + rest]
        for s, members in enumerate(_STAGES[kind]):
            if top in members:
                i = members.index(top)
                names += [f"stage{s + 1}.{i}.{tail}", f"backbone.{s}.{i}.{tail}"]
        return names
    if key == _MEAN_SHIFT:
        return [key, _MEAN_SHIFT_ALIAS, "dp_layers.6.4.running_mean"]
    names = [key]
    for ours, listed in _heads(kind):
        if key.startswith(ours):
            names.append(listed + key[len(ours):])
    return names


def _our_name(key: str, kind: str) -> Tuple[Optional[str], bool]:
    """``(our key, is canonical)`` of a reference ``key``; ``(None, False)`` if unknown."""
    if key.startswith(_RESNET):
        return _BACKBONE + key[len(_RESNET):], True
    m = re.match(r"^(?:stage(\d+)|backbone\.(\d+))\.(\d+)\.(.+)$", key)
    if m:
        s = int(m.group(1)) - 1 if m.group(1) else int(m.group(2))
        stages = _STAGES[kind]
        i = int(m.group(3))
        if 0 <= s < len(stages) and i < len(stages[s]) and stages[s][i]:
            return f"{_BACKBONE}{stages[s][i]}.{m.group(4)}", False
        return None, False
    for ours, listed in _heads(kind):
        if key.startswith(listed):
            key = ours + key[len(listed):]
            return (_MEAN_SHIFT, False) if key == _MEAN_SHIFT_ALIAS else (key, False)
        if key.startswith(ours):
            return (_MEAN_SHIFT, False) if key == _MEAN_SHIFT_ALIAS else (key, True)
    if kind == "irn" and key == _MEAN_SHIFT:
        return key, True
    return None, False


def from_reference_state_dict(state: Mapping[str, Tensor], kind: Optional[str] = None) -> Dict[str, Tensor]:
    """A reference ``res50_cam.pth`` / ``res50_irn.pth`` state dict in irnet_fast's names.

    Args:
        state: the reference's ``state_dict()`` (aliases and training buffers may be present).
        kind: ``"cam"`` or ``"irn"``; None infers it from the keys.

    Returns:
        ``{our key: tensor}`` for :class:`~irnet_fast.models.CAMNet` / :class:`~irnet_fast.models.IRNet`
        (``num_batches_tracked`` counters only where the file has them).

    Raises:
        ReferenceFormatError: a key the reference's network does not have (all of them named).
    """
    kind = reference_kind(state) if kind is None else kind
    if kind not in _STAGES:
        raise ValueError(f"from_reference_state_dict(): kind expected 'cam' or 'irn', got {kind!r}")
    out: Dict[str, Tensor] = {}
    canonical = set()
    unknown = []
    for key, value in state.items():
        if _DROPPED.match(key) and kind == "irn":
            continue
        ours, is_canonical = _our_name(key, kind)
        if ours is None:
            unknown.append(key)
        elif is_canonical or (ours not in canonical and ours not in out):
            out[ours] = value
            if is_canonical:
                canonical.add(ours)
    if unknown:
        raise ReferenceFormatError(f"from_reference_state_dict(): unknown keys {_short(sorted(unknown))} (not in "
                                   f"the reference's {kind} network)")
    return out


def to_reference_state_dict(state: Mapping[str, Tensor], kind: Optional[str] = None) -> Dict[str, Tensor]:
    """An irnet_fast CAM / IRNet state dict under every name the reference's ``state_dict()`` has.

    The reference loads the result with ``load_state_dict(..., strict=True)`` (aliases share the
    tensors, so the file holds each once). Its networks are ResNet-50 only.

    Raises:
        ReferenceFormatError: ``state`` is not an irnet_fast ResNet-50 CAM or IRNet state dict.
    """
    kind = reference_kind(state) if kind is None else kind
    if kind not in _STAGES:
        raise ValueError(f"to_reference_state_dict(): kind expected 'cam' or 'irn', got {kind!r}")
    if is_reference_state_dict(state):
        raise ReferenceFormatError("to_reference_state_dict(): state is already in the reference's layout")
    if "backbone.layer3.5.conv3.weight" not in state or "backbone.layer4.0.conv3.weight" not in state:
        raise ReferenceFormatError("to_reference_state_dict(): state expected an irnet_fast ResNet-50 network "
                                   "(the reference's networks are ResNet-50 only), got keys "
                                   f"{_short(sorted(state))}")
    out: Dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        names = _reference_names(key, kind)
        if _our_name(names[0], kind)[0] != key:
            unknown.append(key)
            continue
        for name in names:
            out[name] = value
    if unknown:
        raise ReferenceFormatError(f"to_reference_state_dict(): unknown keys {_short(sorted(unknown))} (not in "
                                   f"irnet_fast's {kind} network)")
    return out
