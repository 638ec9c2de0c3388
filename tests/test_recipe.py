"""The paper's training procedure and SafeFakes' alternatives: each option does what its name says."""

import pytest
import torch

import train
from gan.conditioning import box_mask, box_pixels
from gan.generator import Generator, GeneratorConfig
from tests.datasets import face_batch
from tests.helpers import RecordCalls


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize(
    "box, resolution, outward, floor",
    [
        ((0.25, 0.25, 0.75, 0.75), 8, ((2, 2), (6, 6)), ((2, 2), (6, 6))),  # on the pixel grid: both agree
        ((0.2, 0.3, 0.8, 0.9), 8, ((1, 2), (7, 8)), ((1, 2), (6, 7))),  # 1.6..6.4, 2.4..7.2
        ((0.2, 0.3, 0.8, 0.9), 16, ((3, 4), (13, 15)), ((3, 4), (12, 14))),  # 3.2..12.8, 4.8..14.4
        ((0.21, 0.21, 0.79, 0.79), 128, ((26, 26), (102, 102)), ((26, 26), (101, 101))),
    ],
)
def test_box_rounding_rules(box, resolution, outward, floor):
    box = torch.tensor([box])
    for rule, (start, end) in (("outward", outward), ("floor", floor)):
        got = box_pixels(box, resolution, rule)
        assert got[0].tolist() == [list(map(float, start))] and got[1].tolist() == [list(map(float, end))], rule
        mask = box_mask(box, resolution, rule)
        assert mask.sum() == (end[0] - start[0]) * (end[1] - start[1])


def test_box_jitter_moves_each_side_by_a_truncated_share():
    box = torch.tensor([[0.25, 0.25, 0.75, 0.75]] * 3)  # 64 x 64 px at 128 px
    start, end = box_pixels(box, 128, "floor", torch.tensor([0.02, -0.02, 0.0149]))
    assert start[:, 0].tolist() == [31, 33, 32] and end[:, 0].tolist() == [97, 95,
                                                                           96]  # trunc(+-1.28) = +-1, trunc(0.95) = 0
    edge = box_pixels(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), 8, "floor", torch.tensor([0.5]))
    assert edge[0].tolist() == [[0, 0]] and edge[1].tolist() == [[8, 8]]  # clipped to the image
    draws = torch.rand(10_000, generator=torch.Generator().manual_seed(0)) * 2 - 1
    start, end = box_pixels(box[:1].expand(10_000, 4), 128, "floor", draws * 0.02)
    assert (start[:, 0] - 32).abs().max() <= 1 and ((end - start)[:, 0] - 64).abs().max() <= 2  # within +-2 %


def test_raw_output_is_generated_everywhere_and_still_private():
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(16), 32)
    image, mask, keypoints = face_batch(2, 32)
    z = torch.randn(2, 32, 4, 4)
    raw = generator(image, mask, keypoints, z, resolution=32, composite=False)
    composited = generator(image, mask, keypoints, z, resolution=32)
    inside = mask.bool().expand_as(raw)
    assert torch.equal(raw[inside], composited[inside]) and not torch.equal(raw[~inside], image[~inside])
    other_face = torch.where(mask.bool(), torch.randn_like(image) * 100, image)  # different pixels under the mask
    assert torch.equal(generator(other_face, mask, keypoints, z, resolution=32, composite=False), raw)


@pytest.mark.parametrize("critic_input", ["raw", "composited"])
def test_what_the_critic_sees(tmp_path, tiny_config, critic_input):
    config = tiny_config(tmp_path, total=8, callbacks=[{"class_path": "tests.helpers.RecordCalls",
                                                        "init_args": {"network": "D"}}])
    assert train.main(["--config", str(config), "--model.critic_input", critic_input, "--export_onnx", "false"]) == 0
    (_, (real, condition, _), _), (_, (fake, _, _), _) = RecordCalls.calls["D"][:2]  # critic(real), critic(fake)
    outside = condition != 0  # the box is blanked to exactly 0 in the condition
    assert torch.equal(real[outside], condition[outside])
    assert torch.equal(fake[outside], real[outside]) == (critic_input == "composited")


@pytest.mark.parametrize("generator_step, calls", [("fresh", 2), ("reuse", 1)])
def test_the_generator_step_sample(tmp_path, tiny_config, generator_step, calls):
    config = tiny_config(tmp_path, total=16, callbacks=[{"class_path": "tests.helpers.RecordCalls",
                                                         "init_args": {"network": "G"}}])
    assert train.main(["--config", str(config), "--model.generator_step", generator_step,
                       "--export_onnx", "false"]) == 0
    for step in (0, 8):
        latents = [args[3] for seen, args, _ in RecordCalls.calls["G"] if seen == step]
        assert len(latents) == calls
        if calls == 2:
            assert not torch.equal(latents[0], latents[1])  # two different z in one step


@pytest.mark.parametrize("fused_adam", [False, True])
def test_a_non_finite_step_is_retried_on_the_same_batch(tmp_path, tiny_config, fused_adam):
    """fused_adam: the critic's flag stays on the device, blocks the G step there, and is read once."""
    # The critic's 5th call is the first of the second step (real, fake, penalty, then the G step's fake).
    config = tiny_config(tmp_path, total=24, callbacks=[
        {"class_path": "tests.helpers.PoisonOnce", "init_args": {"call": 4}},
        {"class_path": "tests.helpers.RecordCalls", "init_args": {"network": "G"}},
        {"class_path": "tests.helpers.DumpWeights", "init_args": {"folder": str(tmp_path / "w")}}])
    assert train.main(["--config", str(config), "--model.generator_step", "reuse", "--export_onnx", "false",
                       "--model.fused_adam", str(fused_adam).lower()]) == 0
    state = load(tmp_path / "ckpt" / "last.ckpt")["state_dict"]
    assert int(state["guard.retried_steps"]) == 1 and int(state["guard.skipped_steps"]) == 1
    assert int(state["images_seen"]) == 24  # its images counted once
    seen = [step for step, _, _ in RecordCalls.calls["G"]]
    assert seen == [0, 8, 8, 16]  # the batch at 8 ran twice
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    if fused_adam:  # the dropped attempt changed nothing: the same networks as foreach Adam's run, up to rounding
        reference = tiny_config(tmp_path / "foreach", total=24, callbacks=[
            {"class_path": "tests.helpers.PoisonOnce", "init_args": {"call": 4}},
            {"class_path": "tests.helpers.DumpWeights", "init_args": {"folder": str(tmp_path / "foreach" / "w")}}])
        assert train.main(["--config", str(reference), "--model.generator_step", "reuse", "--export_onnx",
                           "false"]) == 0
        fused, foreach = torch.load(tmp_path / "w" / "rank0.pt"), torch.load(tmp_path / "foreach" / "w" / "rank0.pt")
        for network in ("G", "D", "G_ema"):  # fused Adam rounds its update differently (1 ulp)
            torch.testing.assert_close(fused[network], foreach[network], rtol=1e-4, atol=1e-5)


def test_exact_resume_with_the_demo_choices(tmp_path, tiny_config):
    """The paper's choices are the default (the exact-resume test of test_training); the demo's here."""
    choices = ["--model.critic_input", "composited", "--model.generator_step", "reuse", "--export_onnx", "false"]
    dump = {"class_path": "tests.helpers.DumpWeights"}
    straight = tiny_config(tmp_path / "a", total=64, callbacks=[{**dump,
                                                                 "init_args": {"folder": str(tmp_path / "wa")}}])
    assert train.main(["--config", str(straight), *choices]) == 0
    stop = tiny_config(tmp_path / "b", total=64, callbacks=[
        {"class_path": "tests.helpers.InterruptAt", "init_args": {"images": 56}}])
    assert train.main(["--config", str(stop), *choices]) == 143
    resume = tiny_config(tmp_path / "b", total=64, callbacks=[{**dump, "init_args": {"folder": str(tmp_path / "wb")}}])
    assert train.main(["--config", str(resume), *choices, "--ckpt_path", "last"]) == 0
    a, b = torch.load(tmp_path / "wa" / "rank0.pt"), torch.load(tmp_path / "wb" / "rank0.pt")
    for name in ("G", "D", "G_ema"):
        assert torch.equal(a[name], b[name]), name


def test_lazy_regularisation_applies_the_penalty_every_nth_critic_step(tmp_path, tiny_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = tiny_config(tmp_path, total=48)  # 6 steps of 8 images
    assert train.main(["--config", str(config), "--model.gp_every", "2", "--export_onnx", "false"]) == 0
    events = EventAccumulator(str(tmp_path / "run" / "logs"), size_guidance={"scalars": 0}).Reload()
    assert [e.step for e in events.Scalars("loss/D/gp")] == [8, 24, 40]  # critic steps 0, 2, 4
    assert len(events.Scalars("loss/D/total")) == 6
    assert int(load(tmp_path / "ckpt" / "last.ckpt")["state_dict"]["critic_steps"]) == 6


def test_channels_last_trains_the_same_networks(tmp_path, tiny_config):
    weights = {}
    for name, flags in (("default", []), ("channels_last", ["--model.channels_last", "true"])):
        config = tiny_config(tmp_path / name, total=16, callbacks=[
            {"class_path": "tests.helpers.DumpWeights", "init_args": {"folder": str(tmp_path / name / "w")}}])
        assert train.main(["--config", str(config), *flags, "--export_onnx", "false"]) == 0
        weights[name] = torch.load(tmp_path / name / "w" / "rank0.pt")
    for network in ("G", "D", "G_ema"):  # other convolution kernels: equal up to float rounding
        torch.testing.assert_close(weights["channels_last"][network], weights["default"][network], rtol=1e-4, atol=1e-5)
