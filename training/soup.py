"""A uniform model soup: the element-wise mean of the weights of several runs of one recipe.

Runs fine-tuned from the same ImageNet initialisation with the same settings and different seeds usually land
in one basin, where the mean of their weights is itself a good network (Wortsman et al., "Model soups", ICML
2022). It is still one network, so serving costs what one run does, and it averages away part of what the seed
decides (which single photo ends up over the threshold: docs/model.md). BatchNorm running statistics are
averaged with the weights (see below); integer buffers (batch counters) are taken from the first run.

The result is a ``model.pt`` that ``spillwatch train --resume`` takes through the same calibration, threshold
rule, export and evaluation as a trained run (pass the same flags as the runs)::

    python -m training.soup --out runs/soup/model.pt runs/a/model.pt runs/b/model.pt runs/c/model.pt
    spillwatch train --out runs/soup --resume runs/soup/model.pt <the runs' flags> --note "soup of a, b, c"

The averaged running statistics are not the averaged network's own (its logits come out squashed); add
``--bn-recompute-batches 200`` to re-estimate them on training batches first (:mod:`training.bn_stats`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Settings that may differ between the ingredients: where and how a run was executed, and its seed.
#: Every other setting (data, recipe, network) must be equal, or the mean is not one recipe's network.
MAY_DIFFER = frozenset({"seed", "out", "note", "resume", "progress", "threads", "gen_workers", "cache_dir",
                        "bn_recompute_batches"})


class SoupError(ValueError):
    """The checkpoints cannot be averaged (too few, different recipes or different networks)."""


def _load(path: Path) -> dict[str, Any]:
    import torch

    ck = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ck, dict) or "state_dict" not in ck or "config" not in ck:
        raise SoupError(f"{path}: not a model.pt written by spillwatch train")
    return ck


def make_soup(paths: list[Path]) -> dict[str, Any]:
    """The checkpoint (``model.pt`` layout) whose weights are the mean of ``paths``' weights."""
    import torch

    if len(paths) < 2:
        raise SoupError("a soup needs at least two runs")
    cks = [_load(p) for p in paths]
    first = cks[0]
    base_cfg = {k: v for k, v in first["config"].items() if k not in MAY_DIFFER}
    for p, ck in zip(paths[1:], cks[1:], strict=True):
        cfg = {k: v for k, v in ck["config"].items() if k not in MAY_DIFFER}
        diff = sorted(k for k in base_cfg.keys() | cfg.keys() if base_cfg.get(k) != cfg.get(k))
        if diff:
            raise SoupError(f"{p} was trained with other settings than {paths[0]}: {', '.join(diff)}")
        if ck["state_dict"].keys() != first["state_dict"].keys():
            raise SoupError(f"{p} holds another network than {paths[0]}")
    state: dict[str, Any] = {}
    for name, t0 in first["state_dict"].items():
        tensors = [ck["state_dict"][name] for ck in cks]
        if any(t.shape != t0.shape for t in tensors):
            raise SoupError(f"weight {name!r} differs in shape between the runs")
        if t0.is_floating_point():
            state[name] = torch.stack([t.to(torch.float64) for t in tensors]).mean(0).to(t0.dtype)
        else:
            state[name] = t0.clone()
    seeds = [ck["config"].get("seed") for ck in cks]
    card_base = dict(first.get("card_base") or {})
    training = dict(card_base.get("training") or {})
    secs = [((ck.get("card_base") or {}).get("training") or {}).get("train_seconds") for ck in cks]
    # the soup's training cost is every ingredient's; its loss history is no single run's
    training.update(history=[], train_seconds=round(sum(s for s in secs if s is not None), 1) if all(s is not None for s in secs) else None)
    card_base["training"] = training
    return {"state_dict": state, "config": {**first["config"], "seed": seeds[0]},
            "temperature": first.get("temperature"), "card_base": card_base,
            "soup": {"runs": [str(p) for p in paths], "seeds": seeds}}


def main(argv: list[str] | None = None) -> None:
    import argparse

    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="model.pt of each run (same settings, other seeds)")
    ap.add_argument("--out", type=Path, required=True, help="where to write the averaged model.pt")
    a = ap.parse_args(argv)
    try:
        ck = make_soup(a.runs)
    except (SoupError, FileNotFoundError) as e:
        raise SystemExit(f"soup: {e}") from None
    a.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ck, a.out)
    print(f"wrote {a.out}: the mean of {len(a.runs)} runs (seeds {', '.join(str(s) for s in ck['soup']['seeds'])})")


if __name__ == "__main__":
    main()
