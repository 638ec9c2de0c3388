import pytest
import torch

from gan.ema import ema_beta, ema_update
from gan.losses import epsilon_penalty, generator_loss, gradient_penalty, wgan_d_loss


def test_wgan_losses_by_hand():
    real = torch.tensor([[1.0], [3.0]])
    fake = torch.tensor([[-2.0], [0.5]])
    assert wgan_d_loss(real, fake).item() == pytest.approx(-0.75 - 2.0)
    assert generator_loss(fake).item() == pytest.approx(0.75)
    assert epsilon_penalty(real).item() == pytest.approx((1 + 9) / 2)


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = sum(w * x): its gradient is w everywhere, so GP = (||w|| - 1)^2 whatever x_hat is.
    w = torch.tensor([3.0, 0.0, 4.0, 0.0]).view(1, 1, 2, 2)
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    gp = gradient_penalty(lambda x: (x * w).flatten(1).sum(1, keepdim=True), real, fake)
    assert gp.item() == pytest.approx((5.0 - 1.0) ** 2)


def test_gradient_penalty_by_hand_with_epsilon():
    # D(x) = sum(x^2): grad = 2 x_hat with x_hat = e * real + (1 - e) * fake.
    real, fake = torch.ones(2, 1, 1, 2), torch.zeros(2, 1, 1, 2)
    epsilon = torch.tensor([0.5, 0.25]).view(2, 1, 1, 1)
    gp = gradient_penalty(lambda x: x.square().flatten(1).sum(1, keepdim=True), real, fake, epsilon)
    norms = torch.tensor([2 * 0.5 * 2**0.5, 2 * 0.25 * 2**0.5])
    assert gp.item() == pytest.approx(((norms - 1) ** 2).mean().item())


def test_gradient_penalty_is_differentiable_and_scale_free():
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    real, fake, epsilon = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2), torch.rand(4, 1, 1, 1)
    plain = gradient_penalty(critic, real, fake, epsilon)
    scaled = gradient_penalty(critic, real, fake, epsilon, scale=65536.0)
    torch.testing.assert_close(plain, scaled)
    plain.backward()
    assert critic[1].weight.grad.abs().sum() > 0


def test_ema_half_life():
    assert ema_beta(10_000, 10_000) == pytest.approx(0.5)
    assert ema_beta(64, 10_000) ** (10_000 / 64) == pytest.approx(0.5)
    ema, model = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        ema.weight.fill_(0), model.weight.fill_(1)
    ema_update(ema, model, beta=0.75)
    assert torch.allclose(ema.weight, torch.full((2, 2), 0.25))
