"""Write a generator as a checkpoint of DeepPrivacy's own code (``python -m gan.export --format deepprivacy``).

DeepPrivacy's current code (github.com/hukkelas/DeepPrivacy) loads its ``deep_privacy_v1`` model with
``generator.load_state_dict(checkpoint["running_average_generator"])`` from ``<output_dir>/checkpoints/``, the file
that ``latest_checkpoint`` names; for its own config ``configs/fdf/deep_privacy_v1.py`` the output dir is
``outputs/fdf/deep_privacy_v1`` under its repository root. This module writes exactly that folder::

    OUT/checkpoints/step_<images seen>.ckpt     {"running_average_generator": state dict, "global_step": n}
    OUT/checkpoints/latest_checkpoint            the file's name

so that, with ``OUT`` copied (or linked) to ``<DeepPrivacy>/outputs/fdf/deep_privacy_v1``, its anonymizer, video
and webcam tools run the generator trained here (``python anonymize.py -c configs/fdf/deep_privacy_v1.py -s IN
-t OUT``). The key names are the inverse of ``gan.import_deepprivacy.generator_layout_current``, so an import of
the file gives the same generator back (tested). What the weights cannot carry is converted or reported:

- to_rgb's equalized-lr gain is sqrt(2) in DeepPrivacy: weights are rescaled by ``to_rgb_gain / sqrt(2)``;
- DeepPrivacy's PixelNorm eps is 1e-7 (ours: ``pixel_norm_eps``); its crops floor the box ends
  (``conditioning.box_rounding``); its mask is 1 = keep and its landmarks a flat (B, 14) in the same order
  (nose, eyes, ears, shoulders): its own anonymizer builds those inputs, so nothing in the file changes for them;
- the to_rgb / from_rgb layers of lower resolutions (used only while a resolution fades in) have no place in
  DeepPrivacyV1 and are left out.

DeepPrivacyV1's class fixes the geometry: c = 512 (512 channels down to 32 px, 256 at 64 px, 128 at 128 px), 128 px,
a (32, 4, 4) latent. A generator of another geometry is refused unless ``any_geometry`` (its file then loads only
into a DeepPrivacyV1 built with those sizes, which the import's tests do).
"""

import math
import os
from pathlib import Path

import torch

from gan.generator import Generator
from gan.import_deepprivacy import EPS, generator_layout_current

PAPER_GEOMETRY = {"base_width": 512, "resolution": 128, "latent_channels": 32}
DEEPPRIVACY_GAIN = math.sqrt(2.0)
CONFIG = "configs/fdf/deep_privacy_v1.py"  # DeepPrivacy's config of this model, in its repository
OUTPUT_DIR = "outputs/fdf/deep_privacy_v1"  # where that config looks for checkpoints (Config.output_dir)


class DeepPrivacyExportError(ValueError):
    """A generator that DeepPrivacy's DeepPrivacyV1 cannot load; the message says what differs."""


def geometry(generator: Generator) -> dict:
    return {"base_width": generator.config.base_width, "resolution": generator.max_resolution,
            "latent_channels": generator.config.latent_channels}


def deepprivacy_state(generator: Generator) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(DeepPrivacyV1's state dict of ``generator``, our tensors left out)."""
    layout = generator_layout_current(generator.max_resolution)
    ours = generator.state_dict()
    scale = generator.config.to_rgb_gain / DEEPPRIVACY_GAIN
    state = {}
    for key, theirs in layout.items():
        value = ours[key].detach().to("cpu", torch.float32).clone()
        if key.startswith("to_rgb.") and key.endswith(".weight"):
            value = value * scale  # the same effective weight under DeepPrivacy's gain
        state[theirs] = value.contiguous()
    left_out = sorted(set(ours) - set(layout))
    unexpected = [k for k in left_out if not k.startswith(("to_rgb.", "from_rgb."))]
    if unexpected:  # only the fade-in layers of lower resolutions may stay behind
        raise DeepPrivacyExportError(f"tensors with no place in DeepPrivacyV1: {unexpected[:6]}")
    return state, left_out


def export_deepprivacy(generator: Generator, out: str | Path, box_rounding: str, images_seen: int,
                       source_sha256: str | None = None, any_geometry: bool = False) -> dict:
    """Write ``out/checkpoints/step_<images_seen>.ckpt`` and ``latest_checkpoint``; returns what was written and
    the conventions that differ from DeepPrivacy's (``notes``)."""
    found = geometry(generator)
    if found != PAPER_GEOMETRY and not any_geometry:
        raise DeepPrivacyExportError(
            f"DeepPrivacy's DeepPrivacyV1 class builds c = {PAPER_GEOMETRY['base_width']} at "
            f"{PAPER_GEOMETRY['resolution']} px with a {PAPER_GEOMETRY['latent_channels']}-channel latent; this "
            f"generator is c = {found['base_width']} at {found['resolution']} px with {found['latent_channels']} "
            "latent channels, so DeepPrivacy's code could not load it (configs/deepprivacy.yaml trains that geometry)")
    state, left_out = deepprivacy_state(generator)
    notes = []
    if generator.config.pixel_norm_eps != EPS["current"]:
        notes.append(f"DeepPrivacy's PixelNorm eps is {EPS['current']:g}, this generator's "
                     f"{generator.config.pixel_norm_eps:g} (outputs differ by far less than a grey level)")
    if box_rounding != "floor":
        notes.append(f"DeepPrivacy floors the box ends of its crops; this generator was trained with {box_rounding!r}"
                     " rounding (a face's box may sit up to a pixel off in its condition)")
    folder = Path(out) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{int(images_seen)}.ckpt"
    # DeepPrivacy's trainer counts images in "global_step" (gan.import_deepprivacy reads it back as images seen).
    checkpoint = {"running_average_generator": state, "global_step": int(images_seen),
                  "safefakes": {"geometry": found, "box_rounding": box_rounding,
                                "source_sha256": source_sha256 or ""}}
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    (folder / "latest_checkpoint").write_text(path.name + "\n")
    return {"checkpoint": str(path), "tensors": len(state), "left_out": left_out, "notes": notes,
            "geometry": found}
