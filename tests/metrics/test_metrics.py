"""Metrics against hand-computed values: SI-SDR, Fréchet distance, Log-Mel L1, bootstrap, embedders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mgeldm.errors import UserError
from mgeldm.metrics.bootstrap import summarize
from mgeldm.metrics.embedders import MelStatsEmbedder, VGGishEmbedder, VGGishNet, build_fad_embedder
from mgeldm.metrics.frechet import fad, frechet_distance, gaussian_stats, sub_fad
from mgeldm.metrics.logmel import LogMelConfig, log_mel, logmel_l1, mel_filterbank
from mgeldm.metrics.sisdr import si_sdr, si_sdr_improvement


def _orthogonal_pair(n: int = 8000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(n, generator=g, dtype=torch.float64)
    e = torch.randn(n, generator=g, dtype=torch.float64)
    r, e = r - r.mean(), e - e.mean()
    e = e - (e @ r) / (r @ r) * r  # noise orthogonal to the reference
    return r, e


@pytest.mark.parametrize("a,noise_gain", [(1.0, 0.1), (0.3, 1.0), (2.5, 0.01)])
def test_si_sdr_closed_form(a, noise_gain):
    r, e = _orthogonal_pair()
    est = a * r + noise_gain * e
    expected = 10 * math.log10((a**2 * float(r @ r)) / (noise_gain**2 * float(e @ e)))
    assert float(si_sdr(est, r)) == pytest.approx(expected, abs=1e-6)


def test_si_sdr_scale_invariant_batched_and_undefined_for_silence():
    r, e = _orthogonal_pair()
    est = r + 0.5 * e
    batch = torch.stack([est, 7.0 * est, -0.1 * est])
    out = si_sdr(batch, r.expand(3, -1))
    assert out.shape == (3,)
    assert torch.allclose(out, out[0].expand(3), atol=1e-9)  # any non-zero gain, sign included
    assert float(si_sdr(est + 0.5 * e, r)) < float(out[0]) - 3
    assert torch.isnan(si_sdr(torch.zeros_like(r), r))
    assert torch.isnan(si_sdr(r, torch.zeros_like(r)))


def test_si_sdr_improvement_is_difference_against_mixture():
    r, e = _orthogonal_pair()
    mix = r + e
    est = r + 0.1 * e
    expected = 10 * math.log10(1 / 0.01)
    # both SI-SDRs have the closed form of the orthogonal case; the |r|/|e| terms cancel
    got = float(si_sdr_improvement(est, r, mix))
    assert got == pytest.approx(expected, abs=1e-6)
    assert float(si_sdr_improvement(mix, r, mix)) == 0.0


def test_frechet_1d_and_diagonal_closed_form():
    # 1-D: (m1-m2)^2 + s1 + s2 - 2 sqrt(s1 s2)
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 4 + 9 - 2 * 6)
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_full_covariance_matches_sqrtm_formula_and_is_stable():
    from scipy import linalg

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    # rank-deficient covariances (fewer samples than dimensions): finite and non-negative
    x, y = rng.standard_normal((5, 32)), rng.standard_normal((5, 32)) + 1.0
    d = fad(x, y)
    assert np.isfinite(d) and d > 0
    assert fad(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fad_of_samples_approaches_gaussian_distance_and_sub_fad_mean():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20000, 2))
    y = rng.standard_normal((20000, 2)) * 2 + np.array([1.0, 0.0])
    # closed form for N(0, I) vs N((1,0), 4I): 1 + 2 * (1 - 2)^2 = 3
    assert fad(x, y) == pytest.approx(3.0, rel=0.03)
    out = sub_fad({"bass": x, "drums": y}, {"bass": x, "drums": x, "piano": x})
    assert set(out) == {"bass", "drums", "mean"}
    assert out["bass"] == pytest.approx(0.0, abs=1e-8)
    assert out["mean"] == pytest.approx(out["drums"] / 2)
    with pytest.raises(ValueError):
        gaussian_stats(np.zeros((1, 3)))


def test_logmel_zero_for_identical_and_log_scale_behaviour():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16000, generator=g)
    cfg = LogMelConfig()
    assert torch.all(logmel_l1(x, x, cfg) == 0)
    # magnitude mel, log10: scaling by 10 shifts every bin above the floor by exactly 1
    assert torch.allclose(logmel_l1(10 * x, x, cfg), torch.ones(2), atol=1e-4)
    assert torch.allclose(logmel_l1(x, 0.1 * x, cfg), torch.ones(2), atol=1e-4)
    # silence sits on the floor: finite; under the absolute floor its distance grows with the signal level, under
    # the excerpt's floor (here the reference's own peak - 60 dB) it does not
    z = torch.zeros(16000)
    d1, d2 = float(logmel_l1(z, x[0], cfg.absolute())), float(logmel_l1(z, 10 * x[0], cfg.absolute()))
    assert math.isfinite(d1) and d2 == pytest.approx(d1 + 1, abs=1e-3)
    r1, r2 = float(logmel_l1(z, x[0], cfg)), float(logmel_l1(z, 10 * x[0], cfg))
    assert math.isfinite(r1) and r2 == pytest.approx(r1, abs=1e-3) and r1 < d1
    assert log_mel(x, cfg).shape == (2, cfg.n_mels, 16000 // cfg.hop_length + 1)


def test_mel_filterbank_is_triangular_and_covers_the_range():
    fb = mel_filterbank(16000, 1024, 80, 0.0, 8000.0)
    assert fb.shape == (80, 513)
    assert float(fb.max()) <= 1.0 + 1e-6 and float(fb.min()) >= 0.0
    assert bool((fb.sum(0)[2:-2] > 0).all())  # every inner frequency bin is covered
    peaks = fb.argmax(dim=1)
    assert bool((peaks[1:] >= peaks[:-1]).all())  # centres rise with the band index


def test_bootstrap_summary():
    x = np.random.default_rng(0).normal(3.0, 1.0, size=200)
    s = summarize(list(x) + [float("nan")], n_boot=2000, seed=0)
    assert s["n"] == 200
    assert s["mean"] == pytest.approx(x.mean()) and s["std"] == pytest.approx(x.std(ddof=1))
    assert s["ci_low"] < s["mean"] < s["ci_high"]
    half = 1.96 * x.std(ddof=1) / math.sqrt(200)  # normal-theory half width
    assert (s["ci_high"] - s["ci_low"]) / 2 == pytest.approx(half, rel=0.15)
    assert summarize(x, seed=0) == summarize(x, seed=0)
    assert summarize(x, seed=0)["ci_low"] != summarize(x, seed=1)["ci_low"]
    assert summarize([float("nan")])["n"] == 0 and summarize([2.0])["std"] == 0.0


def test_melstats_embedder_is_deterministic_and_discriminates():
    emb = MelStatsEmbedder()
    t = torch.arange(32000) / 16000
    tone = torch.sin(2 * math.pi * 440 * t)
    noise = torch.randn(32000, generator=torch.Generator().manual_seed(0)) * 0.3
    a, b = emb.embed(tone, 16000), emb.embed(tone, 16000)
    assert a.shape == (2, emb.dim) and np.array_equal(a, b)
    assert emb.embed(tone[::2].contiguous(), 8000).shape == (2, emb.dim)  # resampled to 16 kHz
    assert np.abs(emb.embed(noise, 16000) - a).mean() > 0.5


def test_vggish_missing_weights_is_one_line_user_error(tmp_path):
    with pytest.raises(UserError) as err:
        build_fad_embedder("vggish", {"weights": str(tmp_path / "vggish.pth")})
    assert "\n" not in str(err.value) and "vggish.pth" in str(err.value)
    with pytest.raises(UserError):
        build_fad_embedder("nope")


def test_vggish_front_end_examples():
    from mgeldm.metrics.embedders import vggish_log_mel

    x = vggish_log_mel(torch.randn(3 * 16000, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (3, 1, 96, 64)  # 0.96 s examples: 96 frames of 10 ms x 64 bands
    assert float(x.min()) >= math.log(0.01) - 1e-6  # log(mel + 0.01)
    short = vggish_log_mel(torch.zeros(1000))
    assert short.shape == (1, 1, 96, 64) and torch.allclose(short, torch.full_like(short, math.log(0.01)))


@pytest.mark.slow
def test_vggish_network_loads_local_state_dict_and_embeds(tmp_path):
    net = VGGishNet()
    path = tmp_path / "vggish.pth"
    torch.save(net.state_dict(), path)
    emb = VGGishEmbedder(str(path))
    out = emb.embed(torch.randn(2 * 16000, generator=torch.Generator().manual_seed(0)), 16000)
    assert out.shape == (2, 128) and np.isfinite(out).all()  # two 0.96 s examples
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError):
        VGGishEmbedder(str(bad))


def test_clap_embedder_uses_the_conditioner_audio_branch():
    from mgeldm.models.conditioners import register_conditioner

    calls = []

    class FakeAudio:
        dim, sample_rate = 3, 8000

        def embed_audio(self, audio, sample_rate, *, generator=None):
            calls.append((tuple(audio.shape), sample_rate))
            return torch.stack([audio.mean(-1), audio.std(-1), audio.abs().max(-1).values], dim=-1)

        def to(self, device=None, dtype=None):
            return self

    register_conditioner("fake_audio_for_metrics")(lambda config, device: FakeAudio())
    emb = build_fad_embedder("clap", {"conditioner": {"type": "fake_audio_for_metrics"}})
    out = emb.embed(torch.ones(16000 * 25), 16000)  # 25 s at 16 kHz -> two 10 s segments at 8 kHz
    assert out.shape == (2, 3) and emb.dim == 3
    assert calls == [((2, 80000), 8000)]
    with pytest.raises(UserError):
        build_fad_embedder("clap", {})


def test_one_logmel_ratio_and_closest_stem_rule(tmp_path):
    """The ratio to the mixture and the closest-stem rule live in metrics/: evaluate.py's engine and the
    in-memory scores use the same ones (a mixture equal to the reference gives a finite ratio)."""
    import soundfile as sf

    from mgeldm.evaluation.stems import evaluate_pairs, pair_files
    from mgeldm.metrics.closest import closest_stem, logmel_distance, share
    from mgeldm.metrics.logmel import LogMelConfig, logmel_l1_ratio_vs_mix

    t = torch.arange(16000) / 16000
    bass, drums = 0.3 * torch.sin(2 * math.pi * 80 * t), 0.3 * torch.sin(2 * math.pi * 1000 * t)
    est = bass + 0.05 * drums
    for folder, wave in (("pred", est), ("ref", bass), ("mix", bass + drums)):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "song.wav", wave.numpy(), 16000, subtype="FLOAT")
    result = evaluate_pairs(
        pair_files(tmp_path / "pred", tmp_path / "ref", tmp_path / "mix"), metrics=["logmel_l1_ratio_vs_mix"], n_boot=10
    )
    from_files = result["per_file"][0]["model"]["logmel_l1_ratio_vs_mix"]
    in_memory = logmel_l1_ratio_vs_mix(est, bass, bass + drums, LogMelConfig())
    assert from_files == pytest.approx(in_memory, rel=1e-5) and 0 < in_memory < 1
    assert logmel_l1_ratio_vs_mix(bass + drums, bass, bass + drums) == pytest.approx(1.0)
    assert math.isfinite(logmel_l1_ratio_vs_mix(est, bass, bass))  # a one-stem mixture: finite
    stems = {"bass": bass, "drums": drums}
    assert closest_stem(est, stems, logmel_distance()) == "bass"
    assert closest_stem(drums + 0.05 * bass, stems, logmel_distance()) == "drums"
    assert share([True, False, True, True]) == 0.75 and math.isnan(share([]))
