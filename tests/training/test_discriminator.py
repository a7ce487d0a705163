"""The EnCodec-style MS-STFT discriminator (docs/compatibility.md#autoencoder-training): layout, conv0 without weight
norm, hinge + FM."""

from __future__ import annotations

import pytest
import torch

from mgeldm.training.discriminator import MultiScaleSTFTDiscriminator, hinge_losses


def test_structure_matches_spec():
    d = MultiScaleSTFTDiscriminator()
    assert len(d.discriminators) == 5
    sub = d.discriminators[0]
    keys = set(sub.state_dict())
    assert "convs.0.conv.weight" in keys and "convs.0.conv.weight_g" not in keys  # conv0: no weight norm
    for j in range(1, 5):
        assert f"convs.{j}.conv.weight_g" in keys and f"convs.{j}.conv.weight_v" in keys
    assert "conv_post.conv.weight_g" in keys
    convs = [m.conv for m in sub.convs]
    assert convs[0].in_channels == 2 and convs[0].kernel_size == (3, 9)
    assert [c.dilation for c in convs[1:4]] == [(1, 1), (2, 1), (4, 1)]
    assert all(c.stride == (1, 2) for c in convs[1:4]) and convs[4].kernel_size == (3, 3)
    assert all(c.out_channels == 64 for c in convs) and sub.conv_post.conv.out_channels == 1
    assert [s.n_fft for s in d.discriminators] == [2048, 1024, 512, 256, 128]
    assert [s.hop_length for s in d.discriminators] == [512, 256, 128, 64, 32]


def test_spectrogram_is_window_normalised_complex():
    d = MultiScaleSTFTDiscriminator(n_ffts=[64], hop_lengths=[16])
    sub = d.discriminators[0]
    x = torch.randn(2, 1, 512)
    z = sub.spectrogram(x)
    frames = 1 + (512 - 64) // 16  # center=False
    assert z.shape == (2, 2, frames, 33)
    w = torch.hann_window(64)
    ref = torch.stft(x[:, 0], 64, 16, window=w, center=False, return_complex=True) / w.square().sum().sqrt()
    torch.testing.assert_close(z[:, 0], ref.real.transpose(-1, -2))
    torch.testing.assert_close(z[:, 1], ref.imag.transpose(-1, -2))


def test_hinge_and_feature_matching_hand_checked():
    lr = [torch.tensor([0.5, 2.0]), torch.tensor([-1.0])]
    lf = [torch.tensor([0.0, -3.0]), torch.tensor([1.0])]
    fr = [[torch.ones(2), torch.zeros(2)], [torch.ones(3)]]
    ff = [[torch.zeros(2), torch.ones(2) * 3], [torch.ones(3) * 2]]
    dis, adv, fm = hinge_losses(lr, lf, fr, ff)
    # scale0: relu(1-[.5,2]) = [.5,0] -> .25 ; relu(1+[0,-3]) = [1,0] -> .5 ; scale1: 2 + 2
    assert dis.item() == pytest.approx(0.25 + 0.5 + 2.0 + 2.0)
    assert adv.item() == pytest.approx(1.5 - 1.0)
    assert fm.item() == pytest.approx((1 + 3) / 2 + 1)


def test_forward_fp32_under_autocast_and_grads():
    d = MultiScaleSTFTDiscriminator(n_ffts=[128, 64], hop_lengths=[32, 16], filters=8)
    x = torch.randn(2, 1, 1024, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, fmaps = d(x)
    assert all(logit.dtype == torch.float32 for logit in logits)
    assert len(fmaps[0]) == 5
    dis, adv, fm = d.loss(torch.randn(2, 1, 1024), x)
    (dis + adv + fm).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert d.discriminators[0].convs[0].conv.weight.grad is not None
