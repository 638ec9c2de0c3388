"""Export the EMA generator for deployment: safetensors + JSON, and a single-file ONNX model.

    python -m gan.export --checkpoint checkpoints/demo/last.ckpt --out checkpoints/demo/export [--no-onnx]
    python -m gan.export --checkpoint checkpoints/fdf/last.ckpt --out dp_v1 --format deepprivacy

``--format deepprivacy`` writes a checkpoint that DeepPrivacy's own code loads as its ``deep_privacy_v1`` model
(``gan.export_deepprivacy``); ``--checkpoint`` may also be an export folder.

The export runs at the generator's full resolution with alpha = 1 and holds no code: ``generator.json``
describes the architecture and every input convention, ``generator.safetensors`` the weights (its sha256
is in the JSON), ``generator.onnx`` the same network for onnxruntime and other runtimes.
``gan.load_generator(DIR)`` rebuilds it strictly; ``load_onnx_generator(DIR)`` runs the ONNX file in onnxruntime.
Both check the format version and the sha256 that ``generator.json`` records for the file they read, and read an
older ``generator.json`` through ``gan.formats.upgrade_export``. ``conditioning.box_rounding`` is the rule the
generator was trained with; the anonymizer and the privacy report place the box by it.
"""

import argparse
import json
import logging
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from data.checksum import sha256_file
from data.crop import EXPANSION
from data.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from gan.channels import LATENT_RESOLUTION
from gan.checkpoint import ema_generator_from_checkpoint
from gan.conditioning import Rounding, check_rounding
from gan.formats import FORMAT_VERSION, READABLE_VERSIONS, upgrade_export
from gan.generator import Generator, GeneratorConfig

FORMAT = "safefakes-generator"
INPUT_NAMES = ("condition", "mask", "keypoints", "z")


class ExportedGenerator(nn.Module):
    """A generator fixed at its full resolution and alpha = 1: ``forward(condition, mask, keypoints, z)``.

    condition: ``(B, 3, R, R)`` float in [-1, 1] (pixels under the mask are ignored); mask: ``(B, 1, R, R)``,
    1 = generate; keypoints: ``(B, 7, 2)`` normalised (x, y), absent outside [0, 1); z: ``(B, 32, 4, 4)``.
    Returns ``(B, 3, R, R)`` in about [-1, 1], equal to ``condition`` outside the mask.
    """

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator
        self.resolution = generator.max_resolution
        self.latent_shape = generator.latent_shape

    def forward(self, condition: torch.Tensor, mask: torch.Tensor, keypoints: torch.Tensor,
                z: torch.Tensor) -> torch.Tensor:
        return self.generator(condition, mask, keypoints, z, resolution=self.resolution, alpha=1.0)


def describe(generator: Generator, box_rounding: Rounding, images_seen: int, config: dict | None,
             source: dict | None = None) -> dict:
    r = generator.max_resolution
    z = LATENT_RESOLUTION
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": {"class": "gan.generator.Generator", "max_resolution": r,
                         "generator": asdict(generator.config)},
        "conditioning": {"box_rounding": check_rounding(box_rounding)},
        "resolution": r,
        "alpha": 1.0,
        "inputs": {
            "condition": {"shape": ["B", 3, r, r], "dtype": "float32", "range": [-1.0, 1.0],
                          "layout": "RGB, channels first", "fill_value": 0.0,
                          "note": "pixels where mask = 1 are ignored and may hold anything"},
            "mask": {"shape": ["B", 1, r, r], "dtype": "float32", "values": "1 = pixel to generate, 0 = keep"},
            "keypoints": {"shape": ["B", NUM_KEYPOINTS, 2], "dtype": "float32", "names": list(KEYPOINT_NAMES),
                          "coordinates": "(x, y) normalised to [0, 1) inside the crop; x right, y down",
                          "absent": "any point outside [0, 1) (use -1)", "left_right": "the subject's left"},
            "z": {"shape": ["B", generator.config.latent_channels, z, z], "dtype": "float32",
                  "distribution": "N(0, 1); zeros give the mean face"},
        },
        "output": {"name": "image", "shape": ["B", 3, r, r], "range": [-1.0, 1.0],
                   "note": "equals condition where mask = 0"},
        "crop": {"rule": "square face box, expanded by `expansion` of its side on each side, shifted inside "
                         "the photo (padded if larger), resized to `resolution`", "expansion": EXPANSION},
        "images_seen": int(images_seen),
        "training_config": config,
        "source": source or {"kind": "safefakes-training"},
    }


def export(generator: Generator, out: str | Path, box_rounding: Rounding, images_seen: int = 0,
           config: dict | None = None, onnx: bool = True, source: dict | None = None) -> Path:
    """Write generator.safetensors, generator.json and (optionally) generator.onnx into ``out``; ``box_rounding``
    is the rule the generator was trained with (``model.box_rounding``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    generator = generator.cpu().eval()
    weights = out / "generator.safetensors"
    # One metadata entry: safetensors writes several in a random order, and a re-export must be byte-identical.
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, weights,
              metadata={"format": f"{FORMAT} {FORMAT_VERSION}"})
    description = describe(generator, box_rounding, images_seen, config, source)
    description["sha256"] = sha256_file(weights)
    if onnx:
        export_onnx(ExportedGenerator(generator).eval(), out / "generator.onnx")
        description["onnx"] = {"file": "generator.onnx", "sha256": sha256_file(out / "generator.onnx"),
                               "inputs": list(INPUT_NAMES), "outputs": ["image"], "dynamic": ["batch"]}
    (out / "generator.json").write_text(json.dumps(description, indent=1) + "\n")
    return out


def export_onnx(model: ExportedGenerator, path: Path) -> None:
    """One self-contained file (no external data), dynamic batch, inputs named as in ``forward``.

    ``optimize=False``: the exporter's graph optimizer folds PixelNorm's ``+ 1e-8`` away, which turns
    an all-zero feature vector (the blank face region of an untrained model) into 0 * inf = NaN.
    """
    r = model.resolution
    example = (torch.zeros(2, 3, r, r), torch.zeros(2, 1, r, r), torch.zeros(2, NUM_KEYPOINTS, 2),
               torch.zeros(2, *model.generator.latent_shape))
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter logs, at warning level, that it skips torchvision's operators: the generator uses none of them.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # All four inputs share the batch dimension; the exporter says it names only one of them "batch".
        warnings.filterwarnings("ignore", message=r"# The axis name: batch will not be used")
        # torch.export's own pytree code calls an API that torch 2.13 deprecates.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        torch.onnx.export(
            model, example, str(path), input_names=list(INPUT_NAMES), output_names=["image"],
            dynamic_shapes={name: {0: batch} for name in INPUT_NAMES}, external_data=False, dynamo=True,
            optimize=False, verbose=False,
        )
    registration.setLevel(level)


class ExportError(ValueError):
    """An export that cannot be trusted or used; the message names the file."""


def read_description(folder: str | Path) -> dict:
    """``generator.json`` of an export folder, its format and version checked, in the current version's layout."""
    meta_path = Path(folder) / "generator.json"
    if not meta_path.is_file():
        raise ExportError(f"{meta_path}: missing (an export holds generator.json and generator.safetensors)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise ExportError(f"{meta_path}: not valid JSON: {error}") from error
    if not isinstance(meta,
                      dict) or meta.get("format") != FORMAT or meta.get("format_version") not in READABLE_VERSIONS:
        found = (meta.get("format"), meta.get("format_version")) if isinstance(meta, dict) else (None, None)
        raise ExportError(f"{meta_path}: format {found[0]!r} version {found[1]!r}; "
                          f"this SafeFakes reads {FORMAT!r} versions {READABLE_VERSIONS}")
    return upgrade_export(meta)


def verified_file(folder: Path, name: str, expected: str | None) -> Path:
    """``folder / name`` if it exists and its sha256 is ``expected`` (as recorded in generator.json)."""
    path = folder / name
    if not path.is_file():
        raise ExportError(f"{path}: missing")
    digest = sha256_file(path)
    if digest != expected:
        raise ExportError(f"{path}: sha256 {digest} does not match generator.json ({expected}); "
                          "the file was changed or damaged")
    return path


def load_generator(folder: str | Path) -> ExportedGenerator:
    """Rebuild an exported generator strictly: format and version, sha256 of the weights, exact tensor names."""
    folder = Path(folder)
    meta = read_description(folder)
    weights = verified_file(folder, "generator.safetensors", meta.get("sha256"))
    arch = meta["architecture"]
    generator = Generator(GeneratorConfig(**arch["generator"]), arch["max_resolution"])
    state = load_file(weights)
    expected = set(generator.state_dict())
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise ExportError(f"{weights}: tensors do not match the architecture in generator.json "
                          f"(missing {missing[:5]}, unexpected {extra[:5]})")
    generator.load_state_dict(state, strict=True)
    model = ExportedGenerator(generator.requires_grad_(False).eval())
    model.meta = meta
    return model


class OnnxGenerator:
    """``generator.onnx`` in onnxruntime, called like ``ExportedGenerator`` (tensors in, a tensor out)."""

    def __init__(self, path: Path, meta: dict) -> None:
        import onnxruntime  # only the ONNX backend needs it

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.meta = meta
        self.resolution = meta["resolution"]

    def __call__(self, condition, mask, keypoints, z) -> torch.Tensor:
        feeds = dict(zip(INPUT_NAMES, (condition, mask, keypoints, z), strict=True))
        (out,) = self.session.run(None, {k: v.cpu().numpy().astype(np.float32) for k, v in feeds.items()})
        return torch.from_numpy(out)


def load_onnx_generator(folder: str | Path) -> OnnxGenerator:
    """The export's ONNX model in onnxruntime, after checking the format and the ONNX file's sha256."""
    folder = Path(folder)
    meta = read_description(folder)
    if "onnx" not in meta:
        raise ExportError(f"{folder / 'generator.json'}: this export has no ONNX model (exported with --no-onnx)")
    return OnnxGenerator(verified_file(folder, meta["onnx"]["file"], meta["onnx"]["sha256"]), meta)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a training checkpoint (.ckpt) or an export folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--format", choices=["safefakes", "deepprivacy"], default="safefakes",
                        help="safefakes: safetensors + JSON + ONNX; deepprivacy: DeepPrivacy's checkpoint layout")
    parser.add_argument("--no-onnx", action="store_true", help="skip generator.onnx")
    parser.add_argument("--any-geometry", action="store_true",
                        help="deepprivacy: also write widths other than DeepPrivacyV1's c = 512 at 128 px")
    args = parser.parse_args(argv)
    try:
        if Path(args.checkpoint).is_dir():
            model = load_generator(args.checkpoint)
            generator, box_rounding = model.generator, model.meta["conditioning"]["box_rounding"]
            images_seen, config, source_sha = model.meta["images_seen"], model.meta["training_config"], \
                model.meta["sha256"]
        else:
            generator, meta = ema_generator_from_checkpoint(args.checkpoint)
            box_rounding, images_seen = meta["hyper_parameters"]["box_rounding"], meta["images_seen"]
            config, source_sha = meta.get("config"), sha256_file(args.checkpoint)
        if args.format == "deepprivacy":
            from gan.export_deepprivacy import CONFIG, OUTPUT_DIR, export_deepprivacy

            written = export_deepprivacy(generator, args.out, box_rounding, images_seen, source_sha,
                                         any_geometry=args.any_geometry)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.format == "deepprivacy":
        print(f"wrote {written['checkpoint']} ({written['tensors']} tensors; left out, used only during fade-ins: "
              f"{len(written['left_out'])})")
        for note in written["notes"]:
            print(f"note: {note}")
        print(f"DeepPrivacy loads it as deep_privacy_v1: copy {args.out} to <DeepPrivacy>/{OUTPUT_DIR}, then run "
              f"python anonymize.py -c {CONFIG} -s INPUT -t OUTPUT")
        return 0
    export(generator, args.out, box_rounding, images_seen, config, onnx=not args.no_onnx)
    print(f"exported the EMA generator ({images_seen} images seen) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
