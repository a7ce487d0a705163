"""InverseLR formula (docs/compatibility.md#autoencoder-training, docs/compatibility.md#dit-training) and the
ema-pytorch decay schedule (docs/compatibility.md#autoencoder-training)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mgeldm.training.schedulers import InverseLR, build_ema, inverse_lr


def test_inverse_lr_formula_and_scheduler():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=5e-5)
    sch = InverseLR(opt, inv_gamma=1e6, power=0.5, warmup=0.99)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    for n, lr in enumerate(lrs):
        assert lr == pytest.approx((1 - 0.99 ** (n + 1)) * 5e-5 * (1 + n / 1e6) ** -0.5, rel=1e-12)
    assert lrs[0] == pytest.approx(0.01 * 5e-5)  # docs/compatibility.md#dit-training: 0.01·base at step 0
    assert inverse_lr(10**6, 5e-5, inv_gamma=1e6, power=0.5, warmup=0.99) == pytest.approx(5e-5 / math.sqrt(2))
    assert inverse_lr(0, 1.0, inv_gamma=1.0, power=1.0, warmup=0.0, final_lr=0.0) == 1.0
    assert inverse_lr(1000, 1.0, inv_gamma=1.0, power=1.0, warmup=0.0, final_lr=0.1) == 0.1
    # state round trip keeps the step count
    sch2 = InverseLR(torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=5e-5), inv_gamma=1e6, power=0.5, warmup=0.99)
    sch2.load_state_dict(sch.state_dict())
    assert sch2.last_epoch == 5


def test_ema_decay_matches_spec():
    """Updates 1 and 2 copy; after n updates the decay is min(0.9999, 1 − (n − 1)^(−3/4))."""
    model = nn.Linear(1, 1, bias=False)
    ema = build_ema(model, {"beta": 0.9999, "power": 0.75, "update_after_step": 1, "update_every": 1})
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    expected = None
    for n, v in enumerate(values, start=1):
        with torch.no_grad():
            model.weight.fill_(v)
        ema.update()
        if n <= 2:
            expected = v
        else:
            decay = min(0.9999, 1 - (n - 1) ** -0.75)
            expected = decay * expected + (1 - decay) * v
        assert ema.ema_model.weight.item() == pytest.approx(expected, rel=1e-6), n
    assert "online_model.weight" not in ema.state_dict()
    assert "ema_model.weight" in ema.state_dict()
