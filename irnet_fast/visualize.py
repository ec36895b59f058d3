"""Pictures of the pipeline's outputs: one panel per image and a Markdown report.

Colour maps (numpy + PIL only, no matplotlib):

- :func:`colorize_labels`: a label map in the PASCAL VOC colours (255, unsure/void, in the
  palette's light cream colour).
- :func:`overlay_cam`: the max over classes of the high-resolution CAMs as a jet-like heat map
  (:func:`jet`) blended over the image.
- :func:`colorize_boundary`: IRNet's boundary map in grey levels, *dark = boundary*.
- :func:`colorize_displacement`: the displacement field as an optical-flow picture: direction as
  hue, magnitude as brightness (normalised by the 99th percentile of the magnitudes).
- :func:`colorize_instances`: one golden-ratio hue per instance, the best-scoring on top.
- :func:`panel`: titled tiles in one row.

:func:`panel_tiles` draws, for one image id, the input, the CAM, the IR label, the boundary
map, the displacement field, the semantic and instance pseudo labels and the ground truth
(semantic and instances) from an output folder (``cam/``, ``ir_label/``, ``sem_seg/``,
``ins_seg/``, and IRNet's outputs when given); whatever is missing becomes a grey ``(missing)``
tile. :func:`irnet_fast.pipeline.panels.render_panels` runs IRNet and writes one panel per image.
:func:`write_report` writes ``report.md`` with the metrics, the step times and the panels.
Every file is written atomically (temporary file + rename).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ._io import atomic_write_bytes, voc_palette
from .data.instances import instance_masks, load_instances

__all__ = ["jet", "hsv_to_rgb", "colorize_labels", "overlay_cam", "colorize_boundary", "colorize_displacement",
           "colorize_instances", "instance_colors", "panel", "panel_tiles", "write_report",
           "TILE_TITLES", "TILE_LEGEND", "VAL_TILE_TITLES", "VAL_TILE_LEGEND", "METRICS"]

logger = logging.getLogger("irnet_fast.visualize")

PathLike = Union[str, "os.PathLike[str]"]

#: Titles of the tiles of :func:`render_panels`, left to right.
TILE_TITLES = ("input", "CAM", "IR label", "boundary", "displacement", "semantic", "instances",
               "GT semantic", "GT instances")

#: Titles of the tiles of the held-out images' panels (the final models against the ground truth).
VAL_TILE_TITLES = ("input", "DeepLab", "GT semantic")

#: One-line description of the tiles (used by :func:`write_report`).
TILE_LEGEND = ("Tiles, left to right: input image; CAM (max over classes, jet: blue low, red high); "
               "IR label (VOC colours, black background, cream unsure); boundary map (dark = boundary); "
               "displacement field (hue = direction, brightness = magnitude); semantic pseudo labels; "
               "instance pseudo labels (one colour per instance, best score on top); "
               "ground-truth semantic labels; ground-truth instances.")

#: The same for the held-out images' panels.
VAL_TILE_LEGEND = ("Held-out image, tiles left to right: input image; the final DeepLab's prediction "
                   "(trained on the semantic pseudo labels); ground-truth semantic labels.")

#: Metric keys of a summary and their names in the report (values in percent).
METRICS = (("cam_miou", "CAM mIoU"), ("ir_label_precision", "IR label precision"),
           ("ir_label_coverage", "IR label coverage"), ("sem_miou", "semantic mIoU"),
           ("ins_map50", "instance mAP@0.5"), ("ins_map70", "instance mAP@0.7"),
           ("val_sem_miou", "DeepLab mIoU (held-out)"), ("val_ins_map50", "Mask R-CNN mAP@0.5 (held-out)"),
           ("val_ins_map70", "Mask R-CNN mAP@0.7 (held-out)"))

MISSING_GREY = 128


# ----------------------------------------------------------------------------------------------
# colour maps

def _as_rgb(image: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, 3)`` of a grey, RGB or RGBA image (floats taken as 0..1 when their max <= 1)."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = img.astype(np.float64)
        if img.size and np.nanmax(img) <= 1.0:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).round().astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image (H, W), (H, W, 3) or (H, W, 4), got shape {img.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def _resize(rgb: np.ndarray, size: Tuple[int, int], nearest: bool = False) -> np.ndarray:
    """``rgb (h, w, 3)`` resized to ``size = (H, W)`` (PIL bilinear, or nearest)."""
    height, width = int(size[0]), int(size[1])
    if rgb.shape[:2] == (height, width):
        return rgb
    im = Image.fromarray(rgb).resize((max(1, width), max(1, height)),
                                     Image.NEAREST if nearest else Image.BILINEAR)
    return np.asarray(im)


def _fit_stride(rgb: np.ndarray, size: Tuple[int, int], stride: int = 4) -> np.ndarray:
    """A stride-``stride`` picture brought to the image size ``(H, W)``: upscaled x ``stride`` and
    cropped when that covers the image (the pipeline's stride-4 maps are ``ceil(H / 4)`` high),
    else simply resized."""
    height, width = size
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    if h * stride >= height and w * stride >= width and (h - 1) * stride < height and (w - 1) * stride < width:
        return np.ascontiguousarray(_resize(rgb, (h * stride, w * stride))[:height, :width])
    return _resize(rgb, (height, width))


def jet(values: np.ndarray) -> np.ndarray:
    """A jet-like colour ramp: ``values`` in [0, 1] (clipped; NaN as 0) -> ``uint8 (..., 3)``,
    dark blue - blue - cyan - yellow - red - dark red."""
    x = np.clip(np.nan_to_num(np.asarray(values, np.float64)), 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0.0, 1.0)
    return (np.stack([r, g, b], axis=-1) * 255.0).round().astype(np.uint8)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB: ``h`` (turns, any real, taken modulo 1), ``s``, ``v`` in [0, 1]
    (broadcast together) -> ``uint8 (..., 3)``."""
    h, s, v = np.broadcast_arrays(np.asarray(h, np.float64) % 1.0, np.clip(np.asarray(s, np.float64), 0, 1),
                                  np.clip(np.asarray(v, np.float64), 0, 1))
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.astype(np.int64) % 6
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return (np.stack([r, g, b], axis=-1) * 255.0).round().astype(np.uint8)


def colorize_labels(label: np.ndarray) -> np.ndarray:
    """A label map ``(H, W)`` (0 background, 1..C classes, 255 unsure/void) in the VOC colours:
    ``uint8 (H, W, 3)``. 255 is the palette's light cream colour (224, 224, 192)."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"colorize_labels(): expected a label map (H, W), got shape {label.shape}")
    palette = np.asarray(voc_palette(), np.uint8).reshape(256, 3)
    return palette[np.clip(label.astype(np.int64), 0, 255)]


def overlay_cam(image: np.ndarray, high_res: np.ndarray, keys: Optional[Sequence[int]] = None,
                alpha: float = 0.5) -> np.ndarray:
    """The max over classes of ``high_res (K, H, W)`` (values in [0, 1]) as a :func:`jet` heat map
    blended (weight ``alpha``) over ``image (H, W, 3)``: ``uint8 (H, W, 3)``.

    ``keys`` (the K class ids) are only checked against K. With K = 0 (no class) the result is
    the image dimmed. CAMs of another size than the image are resized (bilinear)."""
    img = _as_rgb(image)
    cams = np.asarray(high_res)
    if cams.ndim == 2:
        cams = cams[None]
    if cams.ndim != 3:
        raise ValueError(f"overlay_cam(): expected high_res (K, H, W), got shape {cams.shape}")
    if keys is not None and len(np.atleast_1d(keys)) != cams.shape[0]:
        raise ValueError(f"overlay_cam(): {len(np.atleast_1d(keys))} keys for {cams.shape[0]} CAMs")
    if cams.shape[0] == 0:
        return (img.astype(np.float32) * 0.5).round().astype(np.uint8)
    heat = jet(np.nan_to_num(cams.astype(np.float32)).max(axis=0))
    heat = _resize(heat, img.shape[:2])
    out = (1.0 - alpha) * img.astype(np.float32) + alpha * heat.astype(np.float32)
    return np.clip(out, 0, 255).round().astype(np.uint8)


def colorize_boundary(boundary: np.ndarray) -> np.ndarray:
    """IRNet's boundary map ``(h, w)`` or ``(1, h, w)``, values in [0, 1] (clipped), in grey levels,
    **dark = boundary** (0 -> white, 1 -> black): ``uint8 (h, w, 3)``."""
    b = np.asarray(boundary, np.float64)
    if b.ndim == 3 and b.shape[0] == 1:
        b = b[0]
    if b.ndim != 2:
        raise ValueError(f"colorize_boundary(): expected (h, w) or (1, h, w), got shape {np.shape(boundary)}")
    grey = ((1.0 - np.clip(np.nan_to_num(b), 0.0, 1.0)) * 255.0).round().astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def colorize_displacement(disp: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """The displacement field ``(2, h, w)`` (channel 0 = y, 1 = x) as an optical-flow picture:
    direction as hue (``atan2(dy, dx)``, full circle), magnitude as brightness, normalised by the
    ``percentile``-th percentile of the magnitudes (clipped at 1; an all-zero field is black):
    ``uint8 (h, w, 3)``."""
    d = np.nan_to_num(np.asarray(disp, np.float64))
    if d.ndim != 3 or d.shape[0] != 2:
        raise ValueError(f"colorize_displacement(): expected (2, h, w), got shape {d.shape}")
    dy, dx = d[0], d[1]
    mag = np.hypot(dy, dx)
    scale = float(np.percentile(mag, percentile)) if mag.size else 0.0
    if not scale > 0:
        scale = float(mag.max()) if mag.size else 0.0
    value = mag / scale if scale > 0 else np.zeros_like(mag)
    hue = (np.arctan2(dy, dx) + np.pi) / (2.0 * np.pi)
    return hsv_to_rgb(hue, 1.0, value)


def instance_colors(n: int, saturation: float = 0.75, value: float = 1.0) -> np.ndarray:
    """``n`` well separated colours ``uint8 (n, 3)``: hues ``i * 0.618...`` (golden ratio), deterministic."""
    hues = (np.arange(n, dtype=np.float64) * 0.6180339887498949 + 0.05) % 1.0
    return hsv_to_rgb(hues, saturation, value).reshape(n, 3)


def colorize_instances(masks: np.ndarray, scores: Optional[np.ndarray] = None, image: Optional[np.ndarray] = None,
                       alpha: float = 0.6) -> np.ndarray:
    """Instances ``masks bool (P, H, W)`` with ``scores (P,)`` (None: all 1) in colour:
    ``uint8 (H, W, 3)``.

    Instance ``i`` (if its score is > 0) takes colour ``instance_colors(P)[i]``; instances are drawn
    in increasing score order so the best is on top; blended (``alpha``) over ``image`` when
    given. Pixels of no instance are dark (black, or the image at 30 % when given)."""
    m = np.asarray(masks).astype(bool)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"colorize_instances(): expected masks (P, H, W), got shape {m.shape}")
    n, height, width = m.shape
    s = np.ones(n, np.float64) if scores is None else np.nan_to_num(np.asarray(scores, np.float64).reshape(-1))
    if s.shape[0] != n:
        raise ValueError(f"colorize_instances(): {s.shape[0]} scores for {n} masks")
    if image is not None:
        base = _as_rgb(image).astype(np.float32)
        if base.shape[:2] != (height, width):
            raise ValueError(f"colorize_instances(): image {base.shape[:2]} and masks {(height, width)} differ")
    else:
        base = np.zeros((height, width, 3), np.float32)
    out = base * 0.3
    colors = instance_colors(n).astype(np.float32)
    for i in np.argsort(s, kind="stable"):
        if s[i] <= 0:
            continue
        color = colors[i] if image is None else alpha * colors[i] + (1.0 - alpha) * base[m[i]]
        out[m[i]] = color
    return np.clip(out, 0, 255).round().astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# panels

def _font():
    return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut (with ``...``) to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..." if text else ""


def panel(tiles: Sequence[Tuple[str, np.ndarray]], height: Optional[int] = None, margin: int = 4,
          title_height: int = 16, background: Tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Tiles ``[(title, rgb), ...]`` in one row: ``uint8 (H, W, 3)``.

    Every tile is resized (bilinear) to ``height`` (default: the tallest tile), keeping its aspect
    ratio (width ``max(1, round(w * height / h))``), with ``margin`` pixels around and between the
    tiles and a ``title_height`` band above them for the titles (PIL's default font, cut to the
    tile's width). So ``H = height + title_height + 2 * margin`` and
    ``W = sum(widths) + (len(tiles) + 1) * margin``.
    """
    if not tiles:
        raise ValueError("panel(): no tiles")
    rgbs = [_as_rgb(rgb) for _, rgb in tiles]
    for rgb in rgbs:
        if rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise ValueError(f"panel(): empty tile of shape {rgb.shape}")
    height = int(height) if height else max(rgb.shape[0] for rgb in rgbs)
    widths = [max(1, int(round(rgb.shape[1] * height / rgb.shape[0]))) for rgb in rgbs]
    total_w = sum(widths) + (len(rgbs) + 1) * margin
    total_h = height + title_height + 2 * margin
    canvas = Image.new("RGB", (total_w, total_h), tuple(background))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    x = margin
    for (title, _), rgb, w in zip(tiles, rgbs, widths):
        canvas.paste(Image.fromarray(_resize(rgb, (height, w))), (x, margin + title_height))
        text = _fit_text(draw, str(title), font, w)
        if text and title_height > 0:
            draw.text((x, margin), text, fill=(0, 0, 0), font=font)
        x += w + margin
    return np.asarray(canvas)


def _missing(size: Tuple[int, int]) -> np.ndarray:
    return np.full((int(size[0]), int(size[1]), 3), MISSING_GREY, np.uint8)


def _read_png(path: Path) -> Optional[np.ndarray]:
    if not path.is_file():
        return None
    try:
        with Image.open(path) as im:
            arr = np.asarray(im)  # palette PNGs give the indices
    except Exception as exc:  # a damaged file is drawn as missing
        logger.warning("cannot read %s: %s", path, exc)
        return None
    return arr if arr.ndim == 2 else None


def _read_npz(path: Path, keys: Sequence[str]) -> Optional[Dict[str, np.ndarray]]:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in keys}
    except Exception as exc:
        logger.warning("cannot read %s: %s", path, exc)
        return None


def _image_size_hint(out: Path, name: str) -> Tuple[int, int]:
    """The image size from the outputs when the image itself cannot be read."""
    label = _read_png(out / "sem_seg" / f"{name}.png")
    if label is None:
        label = _read_png(out / "ir_label" / f"{name}.png")
    if label is not None:
        return label.shape[:2]
    cam = _read_npz(out / "cam" / f"{name}.npz", ("high_res",))
    if cam is not None and cam["high_res"].ndim == 3:
        return cam["high_res"].shape[1:]
    return 64, 64


def panel_tiles(cfg, source, name: str, irn=None, titles: Sequence[str] = TILE_TITLES) -> List[Tuple[str, np.ndarray]]:
    """The tiles ``titles`` of image ``name`` (:data:`TILE_TITLES`, or any of them and
    ``"DeepLab"``, the final model's ``sem_pred/<id>.png``, in any order after ``"input"``; a
    missing input becomes a grey tile titled ``"<title> (missing)"``), all at the image size.
    ``irn``: ``image -> (boundary (1, h, w), displacement (2, h, w))`` NumPy arrays (IRNet, see
    :func:`irnet_fast.pipeline.panels.render_panels`) or None (boundary and displacement missing)."""
    out = Path(cfg.out_dir)
    tiles: List[Tuple[str, np.ndarray]] = []
    try:
        image = _as_rgb(source.load_image(name))
    except Exception as exc:
        logger.warning("cannot load image %s: %s", name, exc)
        image = None
    size = image.shape[:2] if image is not None else _image_size_hint(out, name)
    tiles.append(("input", image) if image is not None else ("input (missing)", _missing(size)))
    base = image if image is not None else _missing(size)

    def add(title: str, make) -> None:
        try:
            rgb = make()
        except Exception as exc:  # a malformed output is drawn as missing, not fatal
            logger.warning("%s of %s: %s", title, name, exc)
            rgb = None
        if rgb is None:
            tiles.append((f"{title} (missing)", _missing(size)))
        else:
            tiles.append((title, _fit_stride(_as_rgb(rgb), size)))

    def cam_tile():
        cam = _read_npz(out / "cam" / f"{name}.npz", ("keys", "high_res"))
        if cam is None:
            return None
        return overlay_cam(base, cam["high_res"], cam["keys"])

    def label_tile(sub: str):
        label = _read_png(out / sub / f"{name}.png")
        return None if label is None else _resize(colorize_labels(label), size, nearest=True)

    edge = disp = None
    if irn is not None and image is not None:
        try:
            edge, disp = irn(image)
        except Exception as exc:
            logger.warning("IRNet on %s: %s", name, exc)

    def ins_tile():
        path = out / "ins_seg" / f"{name}.npz"
        if not path.is_file():
            return None
        try:
            ins = load_instances(path)
        except Exception as exc:
            logger.warning("cannot read %s: %s", path, exc)
            return None
        mask = instance_masks(ins["label"], len(ins["score"]))
        return colorize_instances(mask, ins["score"], base if mask.shape[1:] == tuple(size) else None)

    def gt_sem_tile():
        if not hasattr(source, "seg_label"):
            return None
        return _resize(colorize_labels(source.seg_label(name)), size, nearest=True)

    def gt_ins_tile():
        if not hasattr(source, "instance_label"):
            return None
        masks, _classes = source.instance_label(name)
        masks = np.asarray(masks, bool)
        return colorize_instances(masks, np.ones(len(masks)), base if masks.shape[1:] == tuple(size) else None)

    makers = {"CAM": cam_tile, "IR label": lambda: label_tile("ir_label"),
              "boundary": lambda: None if edge is None else colorize_boundary(edge),
              "displacement": lambda: None if disp is None else colorize_displacement(disp),
              "semantic": lambda: label_tile("sem_seg"), "instances": ins_tile,
              "DeepLab": lambda: label_tile("sem_pred"), "GT semantic": gt_sem_tile, "GT instances": gt_ins_tile}
    unknown = [t for t in titles[1:] if t not in makers]
    if list(titles[:1]) != ["input"] or unknown:
        raise ValueError(f"panel_tiles(): titles must start with 'input' and come from {sorted(makers)}, "
                         f"got {list(titles)}")
    for title in titles[1:]:
        add(title, makers[title])
    return tiles


# ----------------------------------------------------------------------------------------------
# report

def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _fmt(value: Any, digits: int = 1) -> str:
    if _is_missing(value):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return _md(str(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_))


def write_report(out_dir: PathLike, summary: Mapping[str, Any], panel_paths: Sequence[PathLike],
                 title: str = "irnet_fast demo", val_panel_paths: Sequence[PathLike] = ()) -> Path:
    """Writes ``out_dir/report.md`` (atomically) and returns its path: ``title``; a table of the
    metrics :data:`METRICS` of ``summary`` (in percent, one decimal; None/NaN/absent -> ``n/a``);
    a table of the step times ``summary["seconds"]`` (``{step: seconds}``, plus a total: its
    ``"total"`` entry if any, else the sum); the other scalar entries of ``summary`` under "Run";
    then one section per panel with a relative image link and the tile legend, and the same for
    the held-out images' panels ``val_panel_paths`` (:data:`VAL_TILE_LEGEND`)."""
    out_dir = Path(out_dir)
    lines = [f"# {title}", "", "## Metrics", "", "| metric | value (%) |", "| --- | ---: |"]
    for key, label in METRICS:
        value = summary.get(key)
        lines.append(f"| {label} | {_fmt(float(value) if isinstance(value, (int, np.integer)) else value)} |")
    seconds = summary.get("seconds")
    if isinstance(seconds, Mapping) and seconds:
        lines += ["", "## Step times", "", "| step | seconds |", "| --- | ---: |"]
        total = 0.0
        for step, sec in seconds.items():
            if step == "total":
                continue
            lines.append(f"| {_md(str(step))} | {_fmt(float(sec) if isinstance(sec, (int, np.integer)) else sec)} |")
            if not _is_missing(sec):
                total += float(sec)
        if "total" in seconds:
            total = seconds["total"]
        lines.append(f"| **total** | **{_fmt(total)}** |")
    metric_keys = {k for k, _ in METRICS} | {"seconds"}
    run = [(k, v) for k, v in summary.items() if k not in metric_keys and _is_scalar(v)]
    if run:
        lines += ["", "## Run", "", "| key | value |", "| --- | --- |"]
        for key, value in run:
            text = _fmt(value, 4) if isinstance(value, (float, np.floating)) else _fmt(value)
            lines.append(f"| {_md(str(key))} | {text} |")
    for heading, paths, legend in (("Panels", panel_paths, TILE_LEGEND),
                                   ("Held-out images: the final models", val_panel_paths, VAL_TILE_LEGEND)):
        if paths:
            lines += ["", f"## {heading}"]
        for path in paths:
            path = Path(path)
            rel = Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
            lines += ["", f"### {path.stem}", "", f"![{path.stem}]({rel})", "", legend]
    report = out_dir / "report.md"
    atomic_write_bytes(report, ("\n".join(lines) + "\n").encode("utf-8"))
    return report
