"""The demo's picture panels from a pipeline output folder (drawing: :mod:`irnet_fast.visualize`)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Optional, Sequence

import torch

from .._io import save_rgb_png
from ..visualize import TILE_TITLES, PathLike, panel, panel_tiles
from .common import infer_source
from .distributed import resolve_device
from .inference import boundary_and_displacement, load_edge_displacement

__all__ = ["render_panels"]

logger = logging.getLogger("irnet_fast.visualize")


def render_panels(cfg, names: Optional[Sequence[str]], out_dir: PathLike, device: Any = "cpu",
                  height: Optional[int] = None, source=None, titles: Sequence[str] = TILE_TITLES) -> List[Path]:
    """One panel per image id (``names``; None: every image of ``source``, default the source of
    ``cfg.infer_split``) from the outputs under ``cfg.out_dir``: tiles ``titles`` (see
    :func:`panel_tiles`; :data:`~irnet_fast.visualize.VAL_TILE_TITLES` for the held-out images),
    written atomically to ``out_dir/<id>.png``. For the boundary and displacement tiles IRNet
    (``<cfg.out_dir>/irn.pth``) is loaded once, on ``device``, only if the file exists (else, or if
    it cannot be loaded, those tiles are ``(missing)``). Returns the paths written, in the order of
    ``names``."""
    source = infer_source(cfg) if source is None else source
    names = list(source.ids) if names is None else list(names)
    out_dir = Path(out_dir)
    try:
        dev = resolve_device(str(device))
    except Exception:
        dev = torch.device(device)
    model = None
    weights = Path(cfg.out_dir) / "irn.pth"
    if weights.is_file() and {"boundary", "displacement"} & set(titles):
        try:
            model = load_edge_displacement(cfg, None, dev)
        except Exception as exc:
            logger.warning("cannot load IRNet from %s (boundary and displacement left out): %s", weights, exc)

    def irn(image):
        edge, disp = boundary_and_displacement(model, image, dev)
        return edge.cpu().numpy(), disp.cpu().numpy()

    paths = []
    for name in names:
        rgb = panel(panel_tiles(cfg, source, name, irn if model is not None else None, titles), height=height)
        paths.append(save_rgb_png(out_dir / f"{name}.png", rgb))
    return paths
