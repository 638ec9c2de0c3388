"""Importing DeepPrivacy checkpoints, checked against fixtures built the way DeepPrivacy's own code builds its
networks, and against a reference forward pass written from that code (hukkelas/DeepPrivacy)."""

import json
import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import train
from gan import load_generator
from gan.checkpoint import ema_generator_from_checkpoint
from gan.discriminator import Discriminator, DiscriminatorConfig
from gan.generator import Generator, GeneratorConfig
from gan.import_deepprivacy import main
from gan.keypoints import keypoint_maps
from tests.datasets import face_batch

C = 32  # a narrow DeepPrivacy v1 (the family's channel rule at c = 32: 32 up to 32 px, 16 at 64, 8 at 128)
POOL = UP = {}  # modules without parameters still take an index in nn.Sequential


# -------------------------------------------------------- DeepPrivacy's 2019 networks, grown as its code grows them


def seq(*modules) -> dict:
    return {str(i): m for i, m in enumerate(modules)}


def ws(a, b, k):  # WSConv2d: the bias is its own (1, C, 1, 1) parameter
    return {"conv": {"weight": (b, a, k, k)}, "bias": (1, b, 1, 1)}


def cbr(a, b, k):  # conv_bn_relu (generator) / conv_module_bn (critic): parameters only in index 0
    return {"0": ws(a, b, k)}


def unet(a, b):  # UnetDownSamplingBlock / UnetUpsamplingBlock
    return {"model": seq(cbr(a, b, 3), cbr(b, b, 3))}


def channels(start):
    return [x // 8 * 8 for x in (start, start, start, start // 2, start // 4, start // 8)]


def grown_generator_2019(c, steps):
    tc, prev = channels(c), c
    g = {"to_rgb_new": ws(c, 3, 1), "to_rgb_old": ws(c, 3, 1), "cbd": [unet(c, c)],
         "cbu": [seq(cbr(c + 7 + 32, c, 1), unet(c, c))], "new_up": seq(), "new_down": seq(),
         "from_rgb_new": cbr(3, c, 1), "from_rgb_old": cbr(3, c, 1)}
    for step in range(steps):
        out = tc[step]
        g["from_rgb_old"] = seq(POOL, g["from_rgb_new"])
        if step == 0:
            g["cbu"] = [seq(g["cbu"][0], UP)]
        else:
            g["cbd"] = [g["new_down"], seq(POOL, *g["cbd"][0].values()), *g["cbd"][1:]]
            g["cbu"].append(seq(*g["new_up"].values(), UP))
        g["from_rgb_new"] = cbr(3, out, 1)
        g["new_down"] = seq(unet(out, prev))
        g["to_rgb_old"], g["to_rgb_new"] = g["to_rgb_new"], ws(out, 3, 1)
        g["new_up"] = seq(cbr(prev * 2 + 7, prev, 1), unet(prev, out))
        prev = tc[step]
    g["core_blocks_down"], g["core_blocks_up"] = seq(*g.pop("cbd")), seq(*g.pop("cbu"))
    return g


def grown_critic_2019(c, steps):
    start = int(c * 2**0.5) // 8 * 8
    tc, prev = channels(start), start
    d = {"from_rgb_new": cbr(6, start, 1), "from_rgb_old": cbr(6, start, 1), "new_block": seq(),
         "core_model": seq(seq(cbr(start + 7, start, 3), cbr(start, start, 4))),
         "output_layer": {"linear": {"weight": (1, start)}, "bias": (1,)}}
    for step in range(steps):
        if step:
            d["core_model"] = seq(d["new_block"], *d["core_model"].values())
        d["from_rgb_old"] = seq(POOL, d["from_rgb_new"])
        d["from_rgb_new"] = cbr(6, tc[step], 1)
        d["new_block"] = seq(cbr(tc[step] + 7, tc[step], 3), cbr(tc[step], prev, 3), POOL)
        prev = tc[step]
    return d


def flatten(tree, prefix="") -> dict:
    if isinstance(tree, tuple):
        return {prefix[:-1]: tree}
    return {k: v for name, sub in tree.items() for k, v in flatten(sub, f"{prefix}{name}.").items()}


def random_state(shapes: dict, seed: int) -> dict:
    rng = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=rng) * (0.1 if "bias" in k else 1.0) for k, shape in shapes.items()}


def current_generator(c):
    """DeepPrivacyV1 of the current code: the U-Net with named blocks (its code fixes c = 512; any c here)."""
    ch = {4: c, 8: c, 16: c, 32: c, 64: c // 2, 128: c // 4}

    def conv(a, b, k):
        return {"weight": (b, a, k, k), "bias": (b,)}

    def block(a, b):
        return {"layers": {"0": conv(a, b, 3), "3": conv(b, b, 3)}}

    encoder = {"from_rgb": {"conv": {"0": conv(3, ch[128], 1)}}}
    decoder = {"conv1x1": {"conv": {"0": conv(c + 7 + 32, c, 1)}}, "basic_block0": block(c, c)}
    for level, r in enumerate((4, 8, 16, 32, 64, 128)):
        encoder[f"basic_block{level}"] = block(ch[r], ch[r // 2] if r > 4 else c)
        if level:
            decoder[f"skip_connection{level}"] = {"conv": {"layers": {"0": conv(2 * ch[r // 2] + 7, ch[r // 2], 1)}}}
            decoder[f"basic_block{level}"] = block(ch[r // 2], ch[r])
    return {"encoder": encoder, "decoder": decoder, "to_rgb": conv(ch[128], 3, 1)}


def wrapped(state, steps=5, value=1.0):
    return {"transition_step": steps, "transition_value": value, "parameters": state}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepprivacy")
    g_shapes, d_shapes = flatten(grown_generator_2019(C, 5)), flatten(grown_critic_2019(C, 5))
    old = {"running_average_generator": wrapped(random_state(g_shapes, 1)), "G": wrapped(random_state(g_shapes, 2)),
           "D": wrapped(random_state(d_shapes, 3)), "global_step": 9_600_000, "transition_step": 5}
    torch.save(old, root / "2019.ckpt")
    current_shapes = flatten(current_generator(C))
    new = {"running_average_generator": random_state(current_shapes, 4), "G": wrapped(random_state(current_shapes, 5)),
           "D": wrapped({"layers.from_rgb.conv.0.weight": torch.zeros(8, 7, 1, 1)}), "global_step": 42_000_000}
    torch.save(new, root / "current.ckpt")
    return root, old, new


# ------------------------------------------------------------- DeepPrivacy's forward pass, from its code


def deepprivacy_2019_forward(state, condition, mask_keep, landmarks, z, steps=5):
    """``Generator.forward`` of the 2019 code at transition_value 1: WSConv2d scales its input by sqrt(2/fan_in),
    PixelNorm divides by sqrt(mean + 1e-8); the caller blanks the face (condition * mask)."""
    def wsconv(x, prefix, padding):
        w = state[prefix + ".conv.weight"]
        return F.conv2d(x * (math.sqrt(2) / math.sqrt(w[0].numel())), w, padding=padding) + state[prefix + ".bias"]

    def cbr(x, prefix, padding=1):
        x = F.leaky_relu(wsconv(x, prefix + ".0", padding), 0.2)
        return x / ((x**2).mean(dim=1, keepdim=True) + 1e-8) ** 0.5

    def unet(x, prefix):
        return cbr(cbr(x, prefix + ".0"), prefix + ".1")

    points = landmarks.view(-1, 7, 2)
    pose = [keypoint_maps(points, 4 << i) for i in range(steps + 1)]
    x_in = condition * mask_keep
    x = cbr(x_in, "from_rgb_new", 0)
    skips = [unet(x, "new_down.0.model")]
    x = F.avg_pool2d(skips[0], 2)
    for i in range(steps - 1):
        x = unet(x, "core_blocks_down.0.0.model" if i == 0 else f"core_blocks_down.{i}.1.model")
        skips.append(x)
        x = F.avg_pool2d(x, 2)
    x = unet(x, f"core_blocks_down.{steps - 1}.1")
    x = cbr(torch.cat([x, pose[0], z], 1), "core_blocks_up.0.0.0", 0)
    x = F.interpolate(unet(x, "core_blocks_up.0.0.1.model"), scale_factor=2)
    for k in range(1, steps):
        x = cbr(torch.cat([x, skips[-k], pose[k]], 1), f"core_blocks_up.{k}.0", 0)
        x = F.interpolate(unet(x, f"core_blocks_up.{k}.1.model"), scale_factor=2)
    x = cbr(torch.cat([x, skips[0], pose[-1]], 1), "new_up.0", 0)
    return wsconv(unet(x, "new_up.1.model"), "to_rgb_new", 0)


def deepprivacy_current_forward(state, condition, mask_keep, landmarks, z):
    """``DeepPrivacyV1.forward``: Conv2d with wsconv, gain sqrt(2); PixelNorm eps 1e-7."""
    def conv(x, prefix, act=True):
        w = state[prefix + ".weight"]
        x = F.conv2d(x, w * (math.sqrt(2) / math.sqrt(w[0].numel())), state[prefix + ".bias"], padding=w.shape[-1] // 2)
        if not act:
            return x
        x = F.leaky_relu(x, 0.2)
        return x * torch.rsqrt((x**2).mean(dim=1, keepdim=True) + 1e-7)

    def block(x, prefix):
        return conv(conv(x, prefix + ".layers.0"), prefix + ".layers.3")

    pose = {4 << i: keypoint_maps(landmarks.view(-1, 7, 2), 4 << i) for i in range(6)}
    x = conv(condition * mask_keep, "encoder.from_rgb.conv.0")
    features = {}
    for level in range(5, -1, -1):
        x = block(x, f"encoder.basic_block{level}")
        features[4 << level] = x
        if level:
            x = F.avg_pool2d(x, 2)
    x = conv(torch.cat([x, pose[4], z], 1), "decoder.conv1x1.conv.0")
    x = block(x, "decoder.basic_block0")
    for level in range(1, 6):
        x = F.interpolate(x, scale_factor=2)
        r = x.shape[-1]
        x = conv(torch.cat([x, features[r], pose[r]], 1), f"decoder.skip_connection{level}.conv.layers.0")
        x = block(x, f"decoder.basic_block{level}")
    return conv(x, "to_rgb", act=False)


def inputs(seed=0):
    torch.manual_seed(seed)
    image, mask, keypoints = face_batch(2, 128)
    return image, mask, keypoints, torch.randn(2, 32, 4, 4)


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("fmt", ["2019", "current"])
def test_export_computes_deepprivacys_function(sources, tmp_path, fmt):
    root, old, new = sources
    onnx = ["--no-onnx"] if fmt == "current" else []  # the 2019 case also writes and runs the ONNX model
    assert main([str(root / f"{fmt}.ckpt"), "--out", str(tmp_path / "e"), *onnx]) == 0
    model = load_generator(tmp_path / "e")
    image, mask, keypoints, z = inputs()
    ours = model(image, mask, keypoints, z)
    if fmt == "2019":
        reference = deepprivacy_2019_forward(old["running_average_generator"]["parameters"], image, 1 - mask,
                                             keypoints.flatten(1), z)
    else:
        reference = deepprivacy_current_forward(new["running_average_generator"], image, 1 - mask,
                                                keypoints.flatten(1), z)
    inside = mask.bool().expand_as(ours)
    torch.testing.assert_close(ours[inside], reference[inside], rtol=1e-4, atol=1e-4)  # inside the box: the same
    assert torch.equal(ours[~inside], image[~inside])  # outside: SafeFakes composites the condition back
    meta = json.loads((tmp_path / "e" / "generator.json").read_text())
    assert meta["source"]["format"] == fmt and meta["source"]["kind"] == "deepprivacy"
    assert meta["architecture"]["generator"]["pixel_norm_eps"] == (1e-8 if fmt == "2019" else 1e-7)
    assert meta["architecture"]["generator"]["to_rgb_gain"] == pytest.approx(math.sqrt(2))
    assert meta["conditioning"]["box_rounding"] == "floor"  # DeepPrivacy's dataset rule
    assert meta["images_seen"] == (9_600_000 if fmt == "2019" else 42_000_000)
    if fmt == "2019":
        from gan.export import load_onnx_generator

        torch.testing.assert_close(load_onnx_generator(tmp_path / "e")(image, mask, keypoints, z), ours,
                                   rtol=1e-4, atol=1e-4)


def test_the_2019_critic_is_imported_for_fine_tuning(sources, tmp_path, capsys):
    root, old, _ = sources
    weights = tmp_path / "w.ckpt"
    assert main([str(root / "2019.ckpt"), "--out", str(tmp_path / "e"), "--no-onnx",
                 "--training-checkpoint", str(weights)]) == 0
    assert "critic: imported" in capsys.readouterr().out
    saved = torch.load(weights, weights_only=True)
    critic = Discriminator(DiscriminatorConfig(), C, 128)
    critic.load_state_dict({k[2:]: v for k, v in saved["state_dict"].items() if k.startswith("D.")})
    d = old["D"]["parameters"]
    assert torch.equal(critic.final.linear.weight, d["output_layer.linear.weight"])
    assert torch.equal(critic.blocks["64"].conv1[0].bias, d["core_model.0.0.0.bias"].flatten())
    generator, meta = ema_generator_from_checkpoint(weights)  # the weights file also exports and evaluates
    assert meta["kind"] == "weights" and generator.config.pixel_norm_eps == 1e-8


def test_fine_tuning_starts_from_the_imported_weights(sources, tmp_path, demo, capsys):
    root, _, new = sources
    weights = tmp_path / "w.ckpt"
    assert main([str(root / "current.ckpt"), "--out", str(tmp_path / "e"), "--no-onnx",
                 "--training-checkpoint", str(weights)]) == 0
    assert "fine-tuning starts a fresh critic" in capsys.readouterr().out
    config = {
        "model": {"generator": {"base_width": C, "pixel_norm_eps": 1e-7}, "init_from": str(weights),
                  "schedule": {"start_resolution": 128, "max_resolution": 128, "batch_sizes": {128: 2},
                               "total_images": 4}},
        "data": {"train_path": str(demo), "num_val": 4, "num_workers": 0},
        "trainer": {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": str(tmp_path)},  # config.yaml lands there
        "checkpoint": {"dirpath": str(tmp_path / "ckpt")}, "fid": {"extractor": None}, "samples": {"every_images": 0},
        "export_onnx": False,
    }
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    assert train.main(["--config", str(tmp_path / "c.yaml")]) == 0
    tuned = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    start = new["G"]["parameters"]["to_rgb.weight"]
    after = tuned["state_dict"]["G.to_rgb.128.weight"]
    assert int(tuned["state_dict"]["images_seen"]) == 4
    assert not torch.equal(after, start) and (after - start).abs().max() < 0.1  # two Adam steps away from it
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(json.dumps({**config, "model": {**config["model"], "generator": {"base_width": C}},
                                 "checkpoint": {"dirpath": str(tmp_path / "c2")}}))
    assert train.main(["--config", str(wrong)]) == 2
    assert "model.generator.pixel_norm_eps: 1e-07 (the run has 1e-08)" in capsys.readouterr().err


def test_every_tensor_is_accounted_for(sources, tmp_path, capsys):
    root, old, new = sources

    def attempt(checkpoint, name):
        torch.save(checkpoint, tmp_path / name)
        assert main([str(tmp_path / name), "--out", str(tmp_path / "e"), "--no-onnx"]) == 1
        return capsys.readouterr().err

    state = dict(new["running_average_generator"])
    assert "unknown ['decoder.extra.weight']" in attempt(
        {**new, "running_average_generator": {**state, "decoder.extra.weight": torch.zeros(1)}}, "extra.ckpt")
    del state["to_rgb.bias"]
    assert "missing ['to_rgb.bias']" in attempt({**new, "running_average_generator": state}, "missing.ckpt")
    state = dict(new["running_average_generator"], **{"to_rgb.bias": torch.zeros(4)})
    assert "to_rgb.bias has shape (4,)" in attempt({**new, "running_average_generator": state}, "shape.ckpt")
    fading = {**old, "running_average_generator": wrapped(old["running_average_generator"]["parameters"], value=0.5)}
    assert "transition_value 0.5" in attempt(fading, "fading.ckpt")
    assert "not a DeepPrivacy checkpoint" in attempt({"state_dict": {}}, "other.ckpt")
    assert "unknown generator layout" in attempt({"running_average_generator": {"w": torch.zeros(1)}}, "msg.ckpt")


class Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_a_file_that_needs_code_is_refused(tmp_path, capsys):
    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump({"running_average_generator": Payload()}, f)
    assert main([str(tmp_path / "evil.ckpt"), "--out", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    assert "refused: unpickling it would run code" in err and not (tmp_path / "e").exists()


def test_the_layout_covers_the_paper_model():
    """At c = 512 (on the meta device): every tensor of DeepPrivacy's 46.92 M generator has a place."""
    from gan.import_deepprivacy import generator_layout_2019, generator_layout_current

    for layout, shapes in ((generator_layout_2019(128), flatten(grown_generator_2019(512, 5))),
                           (generator_layout_current(128), flatten(current_generator(512)))):
        assert set(layout.values()) == set(shapes)
        with torch.device("meta"):
            generator = Generator(GeneratorConfig(512), 128)
            state = {k: torch.empty(shape) for k, shape in shapes.items()}
        assert sum(math.prod(s) for s in shapes.values()) == pytest.approx(46.92e6, rel=2e-3)
        ours = generator.state_dict()
        for key, theirs in layout.items():
            assert math.prod(ours[key].shape) == math.prod(state[theirs].shape), key


def test_gain_conversion_rule():
    """DeepPrivacy's to_rgb has gain sqrt(2); a gain-1 layer computes the same with weights x sqrt(2)."""
    torch.manual_seed(0)
    paper, old = Generator(GeneratorConfig(16), 32), Generator(GeneratorConfig(16, to_rgb_gain=1.0), 32)
    state = paper.state_dict()
    for key in state:
        if key.startswith("to_rgb") and key.endswith("weight"):
            state[key] = state[key] * math.sqrt(2)
    old.load_state_dict(state)
    condition, mask, keypoints = face_batch(2, 32)
    z = torch.randn(2, 32, 4, 4)
    torch.testing.assert_close(old(condition, mask, keypoints, z, resolution=32),
                               paper(condition, mask, keypoints, z, resolution=32), rtol=1e-5, atol=1e-5)
    assert np.isclose(paper.to_rgb["32"].scale, math.sqrt(2) / 4)  # gain / sqrt(fan_in = 16 channels)
