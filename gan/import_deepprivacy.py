"""Import a checkpoint of DeepPrivacy (Hukkelås et al., ISVC 2019; github.com/hukkelas/DeepPrivacy).

    python -m gan.import_deepprivacy CHECKPOINT --out DIR [--training-checkpoint OUT.ckpt] [--no-onnx]

Both of DeepPrivacy's checkpoint formats are read with ``torch.load(weights_only=True)`` (a file that needs
code to unpickle is refused) and told apart by their parameter names:

- ``2019``: the ISVC-2019 code (``deep_privacy/models/generator.py``): networks grown by ``extend()``, saved as
  ``{"transition_step", "transition_value", "parameters"}``, biases shaped ``(1, C, 1, 1)``; the critic has the
  same architecture as SafeFakes' and is imported too.
- ``current``: the ``DeepPrivacyV1`` generator of the current code (``deep_privacy_v1`` in its model zoo, the
  released ``step_42000000.ckpt``), read from ``running_average_generator``. Its critic has another
  architecture (rounded-up widths, the mask as an input channel); it is not imported, and a fine-tuning run
  starts a fresh critic.

The EMA generator (``running_average_generator``) becomes an export exactly like ``gan.export``'s (safetensors +
JSON + ONNX) with the source recorded; ``--training-checkpoint`` also writes G, G_ema (and the 2019 critic) as a
SafeFakes weights file for ``model.init_from``. Every tensor is accounted for: an unknown, missing or
mis-shaped tensor is an error naming it. The generator family is DeepPrivacy v1's U-Net at any width c whose
channel table is SafeFakes' (c, c/2 at 64 px, c/4 at 128 px, multiples of 8): 46.9 M parameters at c = 512,
11.8 M at c = 256. Other generators of the model zoo (the multi-scale ones) are refused with the names of
their first unknown tensors.

Conventions handled here, not by the user: DeepPrivacy's gains (sqrt(2) on every conv, to_rgb included) are
SafeFakes' defaults, so weights copy as they are; PixelNorm's eps (1e-8 in 2019, 1e-7 now) is recorded in the
export; DeepPrivacy's mask is 1 = keep and its landmarks a flat (B, 14), SafeFakes' export takes mask 1 =
generate and keypoints (B, 7, 2); z = 0 is the anonymizer's default as it is DeepPrivacy's; SafeFakes composites
the condition back outside the box (inside the box both agree).
"""

import argparse
import pickle
import re
import sys
from pathlib import Path

import torch

from data.checksum import sha256_file
from gan.channels import LATENT_RESOLUTION
from gan.checkpoint import save_weights
from gan.discriminator import Discriminator, DiscriminatorConfig
from gan.export import export
from gan.generator import Generator, GeneratorConfig

EPS = {"2019": 1e-8, "current": 1e-7}  # PixelNorm's eps in each code base
BOX_ROUNDING = "floor"  # DeepPrivacy's datasets floor both box ends at every resolution


class DeepPrivacyImportError(ValueError):
    """A DeepPrivacy checkpoint that cannot be imported; the message names the file and the tensors."""


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint as plain containers and tensors; a file that needs code to unpickle is refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DeepPrivacyImportError(
            f"{path}: refused: unpickling it would run code from the file ({first}). SafeFakes reads only tensors "
            "and plain containers; re-save the state dicts as a dict of tensors in DeepPrivacy's environment."
        ) from None
    if not isinstance(checkpoint, dict) or "running_average_generator" not in checkpoint:
        keys = list(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise DeepPrivacyImportError(f"{path}: not a DeepPrivacy checkpoint (no 'running_average_generator'; "
                                     f"has {keys})")
    return checkpoint


def unwrap(entry, name: str) -> tuple[dict, dict]:
    """(state dict, {"transition_step", "transition_value"} or {}) of a saved network, 'module.' prefixes removed."""
    info = {}
    if isinstance(entry, dict) and "parameters" in entry:
        info = {k: entry[k] for k in ("transition_step", "transition_value") if k in entry}
        entry = entry["parameters"]
    if not isinstance(entry, dict) or not all(torch.is_tensor(v) for v in entry.values()):
        raise DeepPrivacyImportError(f"{name}: expected a state dict of tensors")
    if entry and all(k.startswith("module.") for k in entry):  # saved from nn.DataParallel
        entry = {k[len("module."):]: v for k, v in entry.items()}
    return entry, info


def detect_format(state: dict) -> str:
    if any(k.startswith("core_blocks_down.") for k in state):
        return "2019"
    if any(k.startswith("encoder.basic_block") for k in state):
        return "current"
    raise DeepPrivacyImportError(f"unknown generator layout (first tensors: {sorted(state)[:6]}); "
                                 "SafeFakes imports DeepPrivacy v1's U-Net generator only")


# ------------------------------------------------------------------------------------------- key layouts
# Each layout maps a SafeFakes parameter name to the DeepPrivacy one. Conv blocks are "(name, prefix)" pairs whose
# conv weight sits at ``prefix + conv`` and bias at ``prefix + bias``.


def _conv(ours: str, theirs: str, weight: str, bias: str) -> dict[str, str]:
    return {f"{ours}.weight": theirs + weight, f"{ours}.bias": theirs + bias}


def generator_layout_2019(resolution: int) -> dict[str, str]:
    """The 2019 generator grown to ``resolution``: its modules are named by the order in which they were grown."""
    steps = (resolution // LATENT_RESOLUTION).bit_length() - 1  # transition_step
    if steps < 2:
        raise DeepPrivacyImportError(f"a 2019 generator at {resolution} px: SafeFakes imports 16 px and larger")
    w, b = ".0.conv.weight", ".0.bias"  # a WSConv2d inside conv_bn_relu / conv_module_bn
    layout = {}

    def pair(ours: str, theirs: str) -> None:  # a U-Net block of two conv_bn_relu
        for j in (0, 1):
            layout.update(_conv(f"{ours}.{j}.0", f"{theirs}.{j}", w, b))

    # core_blocks_down: the block grown last first (``0.0``), every older one behind its pooling (``<i>.1``), the
    # 4 px block last (its children, not a U-Net block, were wrapped when the network first grew past 8 px).
    pair(f"encoder.{resolution}", "new_down.0.model")
    for i in range(steps - 1):
        pair(f"encoder.{resolution >> (i + 1)}",
             "core_blocks_down.0.0.model" if i == 0 else f"core_blocks_down.{i}.1.model")
    pair("bottleneck.pre", f"core_blocks_down.{steps - 1}.1")
    layout.update(_conv("bottleneck.fuse.0", "core_blocks_up.0.0.0", w, b))
    for j in (0, 1):
        layout.update(_conv(f"bottleneck.post.{j}.0", f"core_blocks_up.0.0.1.model.{j}", w, b))
    for k in range(1, steps):
        r = LATENT_RESOLUTION << k
        layout.update(_conv(f"decoder.{r}.fuse.0", f"core_blocks_up.{k}.0", w, b))
        for j in (0, 1):
            layout.update(_conv(f"decoder.{r}.conv{j + 1}.0", f"core_blocks_up.{k}.1.model.{j}", w, b))
    layout.update(_conv(f"decoder.{resolution}.fuse.0", "new_up.0", w, b))
    for j in (0, 1):
        layout.update(_conv(f"decoder.{resolution}.conv{j + 1}.0", f"new_up.1.model.{j}", w, b))
    layout.update(_conv(f"from_rgb.{resolution}.0", "from_rgb_new", w, b))
    layout.update(_conv(f"from_rgb.{resolution // 2}.0", "from_rgb_old.1", w, b))
    layout.update(_conv(f"to_rgb.{resolution}", "to_rgb_new", ".conv.weight", ".bias"))
    layout.update(_conv(f"to_rgb.{resolution // 2}", "to_rgb_old", ".conv.weight", ".bias"))
    return layout


def critic_layout_2019(resolution: int) -> dict[str, str]:
    """The 2019 critic grown to ``resolution``: new_block, then core_model from the next resolution down."""
    steps = (resolution // LATENT_RESOLUTION).bit_length() - 1
    w, b = ".0.conv.weight", ".0.bias"
    layout = {}
    for j, name in ((0, "conv1"), (1, "conv2")):
        layout.update(_conv(f"blocks.{resolution}.{name}.0", f"new_block.{j}", w, b))
        for i in range(steps - 1):
            layout.update(_conv(f"blocks.{resolution >> (i + 1)}.{name}.0", f"core_model.{i}.{j}", w, b))
        layout.update(_conv(f"final.{name}.0", f"core_model.{steps - 1}.{j}", w, b))
    layout.update(_conv("final.linear", "output_layer", ".linear.weight", ".bias"))
    layout.update(_conv(f"from_rgb.{resolution}.0", "from_rgb_new", w, b))
    layout.update(_conv(f"from_rgb.{resolution // 2}.0", "from_rgb_old.1", w, b))
    return layout


def generator_layout_current(resolution: int) -> dict[str, str]:
    """``DeepPrivacyV1``: encoder/decoder ``basic_block<L>`` at 4 * 2^L px, ``skip_connection<L>`` fusing at 4 * 2^L."""
    levels = (resolution // LATENT_RESOLUTION).bit_length() - 1
    layout = _conv(f"from_rgb.{resolution}.0", "encoder.from_rgb.conv.0", ".weight", ".bias")
    for level in range(levels + 1):
        r = LATENT_RESOLUTION << level
        encoder = "bottleneck.pre" if level == 0 else f"encoder.{r}"
        for j, index in ((0, 0), (1, 3)):  # layers: conv, LeakyReLU, PixelNorm, conv, ...
            layout.update(_conv(f"{encoder}.{j}.0", f"encoder.basic_block{level}.layers.{index}", ".weight", ".bias"))
            decoder = f"bottleneck.post.{j}.0" if level == 0 else f"decoder.{r}.conv{j + 1}.0"
            layout.update(_conv(decoder, f"decoder.basic_block{level}.layers.{index}", ".weight", ".bias"))
        if level:
            layout.update(_conv(f"decoder.{r}.fuse.0", f"decoder.skip_connection{level}.conv.layers.0", ".weight",
                                ".bias"))
    layout.update(_conv("bottleneck.fuse.0", "decoder.conv1x1.conv.0", ".weight", ".bias"))
    layout.update(_conv(f"to_rgb.{resolution}", "to_rgb", ".weight", ".bias"))
    return layout


# ----------------------------------------------------------------------------------------------- loading


def fill(network: torch.nn.Module, state: dict, layout: dict[str, str], name: str) -> list[str]:
    """Copy ``state`` into ``network`` through ``layout``, strictly; returns our parameters the source lacks."""
    ours = network.state_dict()
    unknown = sorted(set(state) - set(layout.values()))
    missing = sorted(theirs for theirs in layout.values() if theirs not in state)
    if unknown or missing:
        raise DeepPrivacyImportError(
            f"{name}: tensors do not match DeepPrivacy v1's layout: unknown {unknown[:6]}"
            f"{f' (+{len(unknown) - 6} more)' if len(unknown) > 6 else ''}, missing {missing[:6]}"
            f"{f' (+{len(missing) - 6} more)' if len(missing) > 6 else ''}"
        )
    with torch.no_grad():
        for key, theirs in layout.items():
            value = state[theirs]
            if value.ndim == 4 and key.endswith(".bias"):  # 2019 biases are (1, C, 1, 1)
                value = value.flatten()
            if value.shape != ours[key].shape:
                raise DeepPrivacyImportError(f"{name}: {theirs} has shape {tuple(value.shape)}, SafeFakes' {key} "
                                             f"needs {tuple(ours[key].shape)} (another width or architecture)")
            ours[key].copy_(value.to(ours[key].dtype))
    return sorted(set(ours) - set(layout))


def generator_geometry(state: dict, fmt: str, info: dict) -> tuple[int, int]:
    """(base width c, resolution) of a source generator."""
    if fmt == "2019":
        if "transition_step" not in info:
            raise DeepPrivacyImportError("a 2019 generator saved without its transition_step")
        resolution = LATENT_RESOLUTION << int(info["transition_step"])
        pre = [k for k in state if re.fullmatch(r"core_blocks_down\.\d+\.1\.0\.0\.conv\.weight", k)]
        if not pre:
            raise DeepPrivacyImportError(f"a 2019 generator at {resolution} px without its 4 px encoder block")
        return int(state[pre[0]].shape[0]), resolution
    levels = [int(m.group(1)) for k in state if (m := re.fullmatch(r"encoder\.basic_block(\d+)\.layers\.0\.weight", k))]
    return int(state["decoder.basic_block0.layers.0.weight"].shape[0]), LATENT_RESOLUTION << max(levels)


def build_generator(state: dict, fmt: str, info: dict, name: str) -> tuple[Generator, list[str]]:
    """A SafeFakes generator holding the source generator's weights, and the parameters it did not provide."""
    if info.get("transition_value", 1.0) != 1.0:
        raise DeepPrivacyImportError(f"{name}: saved during a fade-in (transition_value {info['transition_value']}); "
                                     "import a checkpoint taken after the resolution stabilised")
    c, resolution = generator_geometry(state, fmt, info)
    latent_key = "core_blocks_up.0.0.0.0.conv.weight" if fmt == "2019" else "decoder.conv1x1.conv.0.weight"
    latent_channels = int(state[latent_key].shape[1]) - c - 7
    # The paper's equalized-lr gains are GeneratorConfig's defaults; only PixelNorm's eps differs between the codes.
    generator = Generator(GeneratorConfig(c, latent_channels, pixel_norm_eps=EPS[fmt]), resolution)
    layout = generator_layout_2019(resolution) if fmt == "2019" else generator_layout_current(resolution)
    return generator, fill(generator, state, layout, name)


def import_checkpoint(path: str | Path, out: str | Path, training_checkpoint: str | Path | None = None,
                      onnx: bool = True) -> dict:
    """Write the export (and the weights file) and return a summary of what was imported."""
    checkpoint = read_checkpoint(path)
    ema_state, ema_info = unwrap(checkpoint["running_average_generator"], f"{path} [running_average_generator]")
    fmt = detect_format(ema_state)
    g_info = unwrap(checkpoint["G"], f"{path} [G]")[1] if "G" in checkpoint else {}
    info = {**g_info, **ema_info}
    ema, fresh = build_generator(ema_state, fmt, info, f"{path} [running_average_generator]")
    images_seen = int(checkpoint.get("global_step", 0))  # DeepPrivacy's own counter of images (not Lightning's)
    source = {"kind": "deepprivacy", "format": fmt, "file": str(path), "sha256": sha256_file(path),
              "global_step": images_seen, "resolution": ema.max_resolution, "base_width": ema.config.base_width,
              "critic": "imported" if fmt == "2019" and "D" in checkpoint else
                        "not imported: DeepPrivacy's current critic has another architecture; fine-tuning starts a "
                        "fresh critic"}
    export(ema, out, BOX_ROUNDING, images_seen, config=None, onnx=onnx, source=source)
    summary = {"format": fmt, "resolution": ema.max_resolution, "base_width": ema.config.base_width,
               "parameters": sum(p.numel() for p in ema.parameters()), "images_seen": images_seen,
               "export": str(out), "not_in_source": fresh, "critic": source["critic"]}
    if training_checkpoint is not None:
        if "G" not in checkpoint:
            raise DeepPrivacyImportError(f"{path}: no 'G' entry, so no training checkpoint can be written")
        g_state, _ = unwrap(checkpoint["G"], f"{path} [G]")
        if detect_format(g_state) != fmt:
            raise DeepPrivacyImportError(f"{path}: G and running_average_generator have different layouts")
        generator, _ = build_generator(g_state, fmt, info, f"{path} [G]")
        critic = None
        if fmt == "2019" and "D" in checkpoint:
            d_state, _ = unwrap(checkpoint["D"], f"{path} [D]")
            critic = Discriminator(DiscriminatorConfig(), ema.config.base_width, ema.max_resolution)  # the paper's gain
            summary["critic_not_in_source"] = fill(critic, d_state, critic_layout_2019(ema.max_resolution),
                                                   f"{path} [D]")
        save_weights(training_checkpoint, generator, ema, critic, images_seen, source, BOX_ROUNDING)
        summary["training_checkpoint"] = str(training_checkpoint)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a DeepPrivacy checkpoint (.ckpt) of either format")
    parser.add_argument("--out", required=True, help="export folder (generator.safetensors, .json, .onnx)")
    parser.add_argument("--training-checkpoint", help="also write G, G_ema (and the 2019 critic) for model.init_from")
    parser.add_argument("--no-onnx", action="store_true", help="skip generator.onnx")
    args = parser.parse_args(argv)
    try:
        summary = import_checkpoint(args.checkpoint, args.out, args.training_checkpoint, onnx=not args.no_onnx)
    except (DeepPrivacyImportError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"imported DeepPrivacy ({summary['format']} format): {summary['resolution']} px, "
          f"c = {summary['base_width']}, "
          f"{summary['parameters'] / 1e6:.2f} M generator parameters, {summary['images_seen']} images seen")
    print(f"export: {summary['export']}")
    if summary["not_in_source"]:
        groups = sorted({".".join(k.split(".")[:2]) for k in summary["not_in_source"]})
        print(f"not in the source (used only below {summary['resolution'] // 2} px; left as initialised): "
              f"{len(summary['not_in_source'])} tensors of {groups}")
    print(f"critic: {summary['critic']}")
    if "training_checkpoint" in summary:
        print(f"weights for fine-tuning: {summary['training_checkpoint']} (model.init_from)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
