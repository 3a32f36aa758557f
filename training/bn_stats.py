"""Re-estimate the BatchNorm running statistics of a network on training batches, weights unchanged.

A network whose weights were averaged (a model soup, :mod:`training.soup`) carries the mean of its members'
running means and variances, which are not the statistics of the averaged network's own activations: its
logits come out squashed or shifted. The standard repair (Izmailov et al., "Averaging weights leads to wider
optima", 2018; ``torch.optim.swa_utils.update_bn``) is one pass over training data with the network in
training mode and the statistics recomputed as a plain average over the batches.

torch's ``update_bn`` resets every BatchNorm layer, then calls ``train()``; here the frozen stem and first blocks
stay in eval mode in training (``SpillNet.train``) and keep their ImageNet statistics, so only the layers that
are in training mode after ``net.train()`` are reset and re-estimated: the same layers whose statistics
training itself moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def recompute_bn(net: Any, batches: Iterable[np.ndarray]) -> int:
    """Recompute the running mean/variance of ``net``'s training-mode BatchNorm layers over ``batches``
    (uint8 RGB [B,S,S,3], the training augmentation's output). Returns the number of batches used.

    Raises ``ValueError`` when ``batches`` is empty; the statistics are then left as they were."""
    import torch

    from training.net import normalise_batch

    was_training = net.training
    net.train()
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training
           and m.track_running_stats]
    bufs = [_buffers(m) for m in bns]
    saved = [(m.momentum, *(t.clone() for t in b)) for m, b in zip(bns, bufs, strict=True)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch weighs the same
    n = 0
    try:
        with torch.no_grad():
            for xs in batches:
                net(normalise_batch(torch.from_numpy(np.ascontiguousarray(xs)), net))
                n += 1
        if n == 0:
            raise ValueError("no batches to re-estimate the BatchNorm statistics on")
    except BaseException:
        for b, (_mom, *old) in zip(bufs, saved, strict=True):
            for t, o in zip(b, old, strict=True):
                t.copy_(o)
        raise
    finally:
        for m, (mom, *_rest) in zip(bns, saved, strict=True):
            m.momentum = mom
        net.train(was_training)
    return n


def _buffers(m: Any) -> tuple[Any, Any, Any]:
    """(running mean, running variance, batch counter) of a BatchNorm layer that tracks them."""
    mean, var, count = m.running_mean, m.running_var, m.num_batches_tracked
    if mean is None or var is None or count is None:
        raise ValueError(f"{m}: tracks no running statistics")
    return mean, var, count
