"""Re-estimating BatchNorm statistics (for a soup of seeds): the layers that train get the statistics of the
network's own activations on the batches given, the frozen ImageNet layers and every weight stay as they were."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.bn_stats import recompute_bn
from training.net import SpillNet


def _net() -> SpillNet:
    torch.manual_seed(0)
    return SpillNet(64, pretrained=False, freeze_blocks=3).eval()


def _batches(n: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8) for _ in range(n)]


def _bn_layers(net: SpillNet) -> dict[str, torch.nn.BatchNorm2d]:
    return {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}


def _stats(m: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    assert isinstance(m, torch.nn.BatchNorm2d) and m.running_mean is not None and m.running_var is not None
    return m.running_mean, m.running_var


def test_statistics_are_the_average_of_the_networks_own_batch_statistics() -> None:
    net = _net()
    trained = net.map_mix[1]  # type: ignore[index]  # a BatchNorm layer of the head: it trains
    frozen = net.stem[1]      # type: ignore[index]  # the stem's: frozen, keeps its ImageNet statistics
    t_mean, t_var = _stats(trained)
    f_mean, f_var = _stats(frozen)
    # an averaged network's statistics: not its own
    with torch.no_grad():
        t_mean.fill_(5.0)
        t_var.fill_(40.0)
    frozen_before = (f_mean.clone(), f_var.clone())
    weights_before = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    seen: list[torch.Tensor] = []
    hook = trained.register_forward_hook(lambda _m, inp, _out: seen.append(inp[0].detach().clone()))
    try:
        assert recompute_bn(net, _batches(3)) == 3
    finally:
        hook.remove()
    assert len(seen) == 3
    # momentum None: every batch weighs the same (mean of the batch means, of the unbiased batch variances)
    want_mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen]).mean(0)
    want_var = torch.stack([x.transpose(0, 1).reshape(x.shape[1], -1).var(dim=1, unbiased=True) for x in seen]).mean(0)
    assert torch.allclose(t_mean, want_mean, atol=1e-5)
    assert torch.allclose(t_var, want_var, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(t_mean, torch.full_like(want_mean, 5.0))
    assert torch.equal(f_mean, frozen_before[0]) and torch.equal(f_var, frozen_before[1])
    after = net.state_dict()
    assert all(torch.equal(after[k], v) for k, v in weights_before.items())
    # the network is left as it was found (eval), and the layer's momentum is back for any later training
    assert not net.training and trained.momentum == 0.1  # torch's default, the head's layers


def test_no_batches_is_an_error_and_changes_nothing() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    momenta = {n: m.momentum for n, m in _bn_layers(net).items()}
    with pytest.raises(ValueError, match="no batches"):
        recompute_bn(net, [])
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    assert {n: m.momentum for n, m in _bn_layers(net).items()} == momenta
