"""decorrelate() on real architectures: ResNet-18 and a small ViT, the layer policy, presets,
the device/dtype of the decorrelation state, and which learning rules apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from signalprop.errors import ConfigError
from signalprop.learning.decorrelation_rule import DecorrelationRule, decorrelation_step
from signalprop.learning.feedback_alignment import DirectFeedbackAlignment, FeedbackAlignment
from signalprop.learning.perturbation import NodePerturbation
from signalprop.nn.decorrelated_layers import DecorrelatedConv2d, DecorrelatedLinear
from signalprop.nn.decorrelation import Decorrelator, decorrelators
from signalprop.nn.decorrelation_policy import PRESETS, decorrelate, layers_to_decorrelate
from signalprop.nn.resnet import resnet18
from signalprop.nn.vit import SmallViT
from signalprop.train import TrainConfig, fit


def _torchvision_models():
    """torchvision.models, or skip (a torchvision built for another torch raises RuntimeError
    on import, which pytest.importorskip would not catch)."""
    try:
        import torchvision.models as models
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"torchvision not usable: {type(exc).__name__}")
    return models


def test_resnet18_every_conv_and_the_classifier_get_a_decorrelator():
    model = resnet18(num_classes=10, in_channels=1)
    weights = {n: p for n, p in model.named_parameters()}
    decorrelate(model, block_size=32)
    names = [n for n, _ in decorrelators(model)]
    assert len(names) == 21  # stem conv, 16 block convs, 3 shortcut convs, fc
    assert "conv1" in names and "fc" in names and "layer2.0.downsample.0" in names
    assert all(type(m) is nn.BatchNorm2d for n, m in model.named_modules() if ".bn" in n)
    for name, param in model.named_parameters():  # same Parameter objects: optimisers keep them
        assert param is weights[name]
    out = model(torch.randn(4, 1, 28, 28))
    out.square().mean().backward()
    assert out.shape == (4, 10) and model.conv1.weight.grad is not None
    assert decorrelation_step(model) == 21


def test_resnet18_matches_torchvision_layout():
    models = _torchvision_models()
    ours = resnet18(num_classes=10, in_channels=1)
    theirs = models.resnet18(num_classes=10)
    theirs.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    theirs.maxpool = nn.Identity()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(ours.eval()(x), theirs.eval()(x))
    decorrelate(theirs, block_size=32)
    assert len(list(decorrelators(theirs))) == 21
    theirs.train()(x).sum().backward()


def test_decorrelation_state_follows_model_to_dtype_and_device():
    model = decorrelate(resnet18(width=8), block_size=16)
    model.to(torch.float64)
    for _, dec in decorrelators(model):
        assert dec.R.dtype == torch.float64 and dec.running_mean.dtype == torch.float64
    model(torch.randn(3, 1, 28, 28, dtype=torch.float64)).sum().backward()
    decorrelation_step(model)
    assert model.conv1.decorrelator.R.dtype == torch.float64
    model.to("meta")  # a device move takes every buffer along (meta: no memory, CPU-only CI)
    assert {dec.R.device.type for _, dec in decorrelators(model)} == {"meta"}
    assert {dec.running_mean.device.type for _, dec in decorrelators(model)} == {"meta"}


def test_vit_wraps_patch_embedding_feedforward_and_head_not_attention():
    torch.manual_seed(0)
    model = decorrelate(SmallViT(dim=32, depth=2, heads=4, mlp_dim=64), lr=1e-2)
    names = [n for n, _ in decorrelators(model)]
    assert names == ["patch_embed", "encoder.layers.0.linear1", "encoder.layers.0.linear2",
                     "encoder.layers.1.linear1", "encoder.layers.1.linear2", "head"]
    attn = model.encoder.layers[0].self_attn
    assert type(attn.out_proj) is not DecorrelatedLinear
    assert all(type(m) is nn.LayerNorm for n, m in model.named_modules() if "norm" in n)
    x = torch.randn(8, 1, 28, 28)
    for _ in range(3):  # move R away from the identity
        model(x).sum().backward()
        decorrelation_step(model)
    assert not torch.allclose(model.encoder.layers[0].linear1.decorrelator.R, torch.eye(32))
    model.eval()
    with_grad = model(x)
    with torch.no_grad():  # the fused inference kernel would skip R: it must stay off
        without_grad = model(x)
    torch.testing.assert_close(with_grad.detach(), without_grad)


def test_include_and_exclude_by_name_and_type():
    model = resnet18(width=8)
    only_fc = [n for n, _ in layers_to_decorrelate(model, include="fc")]
    assert only_fc == ["fc"]
    no_stage4 = [n for n, _ in layers_to_decorrelate(model, exclude=["layer4.*"])]
    assert len(no_stage4) == 16 and not any(n.startswith("layer4") for n in no_stage4)
    convs = [n for n, _ in layers_to_decorrelate(model, include=nn.Conv2d)]
    assert len(convs) == 20
    decorrelate(model, convolutions=False)
    assert [n for n, _ in decorrelators(model)] == ["fc"]
    with pytest.raises(ConfigError, match="module-name patterns or nn.Module types"):
        layers_to_decorrelate(model, include=[3])


def test_unsupported_layers_give_a_clear_error():
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match=r"'0'.*add '0' to exclude"):
        decorrelate(grouped)
    decorrelate(grouped, exclude="0")
    assert [n for n, _ in decorrelators(grouped)] == ["2"]
    vit = SmallViT(dim=16, depth=1, heads=2, mlp_dim=16)
    with pytest.raises(ConfigError, match="MultiheadAttention reads its projection"):
        decorrelate(vit, include="*.out_proj")


def test_presets_fill_in_options_and_explicit_ones_win():
    model = decorrelate(nn.Sequential(nn.Linear(6, 4)), preset="dalm", lr=1e-4)
    dec = model[0].decorrelator
    assert (dec.rule, dec.kappa, dec.center, dec.subsample) == ("whiten", 0.01, False,
                                                                "replacement")
    model = decorrelate(nn.Sequential(nn.Linear(6, 4)), preset="dalm", kappa=0.5)
    assert model[0].decorrelator.kappa == 0.5
    assert PRESETS["ahmad"]["rule"] == "normalised"
    with pytest.raises(ConfigError, match="preset must be one of"):
        decorrelate(nn.Sequential(nn.Linear(6, 4)), preset="nope")


def test_sampling_with_replacement_draws_floor_fraction_rows():
    dec = Decorrelator(4, subsample="replacement", sample_fraction=0.1)
    assert dec.sample_count(128) == 12 and dec.sample_count(5) == 1
    torch.manual_seed(0)
    index = dec.sample_index(10, torch.device("cpu"))
    assert index.shape == (1,)
    dec = Decorrelator(4, subsample="replacement", sample_fraction=1.0)
    torch.manual_seed(3)
    draws = dec.sample_index(8, torch.device("cpu"))
    assert draws.shape == (8,) and len(set(draws.tolist())) < 8  # repeats: with replacement


def _reference_dalm_update(rows: torch.Tensor, R: torch.Tensor, lr: float,
                           kappa: float) -> torch.Tensor:
    """Dalm et al.'s rule from its equations: ``z = R x`` (no centring), ``C = Z^T Z / k``,
    ``R <- R - lr [(1 - kappa) offdiag(C) + kappa diag(C_ii - 1)] R``."""
    z = rows @ R.T
    C = z.T @ z / z.shape[0]
    off = C - torch.diag(C.diagonal())
    return R - lr * ((1 - kappa) * off + kappa * torch.diag(C.diagonal() - 1)) @ R


@pytest.mark.parametrize("block_size", [None, 3])
def test_dalm_preset_linear_update_matches_reference(block_size):
    torch.manual_seed(0)
    model = decorrelate(nn.Sequential(nn.Linear(6, 3)), preset="dalm", lr=0.05,
                        sample_fraction=0.5, block_size=block_size)
    dec = model[0].decorrelator
    mix = torch.randn(6, 6) + torch.eye(6)
    R = torch.eye(6, dtype=torch.float64)
    for step in range(5):
        x = torch.randn(20, 6) @ mix.T + 1.0
        torch.manual_seed(100 + step)
        model(x).sum().backward()
        torch.manual_seed(100 + step)
        index = torch.randint(20, (10,))
        decorrelation_step(model)
        rows = x[index].double()
        if block_size is None:
            R = _reference_dalm_update(rows, R, 0.05, 0.01)
        else:  # every block on its own features
            for start in (0, 3):
                sl = slice(start, start + 3)
                R[sl, sl] = _reference_dalm_update(rows[:, sl], R[sl, sl], 0.05, 0.01)
        torch.testing.assert_close(dec.R.double(), R, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(R, torch.eye(6, dtype=torch.float64))


def test_dalm_preset_conv_update_matches_reference():
    torch.manual_seed(0)
    model = decorrelate(nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1)), preset="dalm",
                        lr=0.05, sample_fraction=0.5)
    conv = model[0]
    R = torch.eye(18, dtype=torch.float64)
    for step in range(3):
        x = torch.randn(6, 2, 7, 7) + 0.5
        torch.manual_seed(7 + step)
        model(x).sum().backward()
        torch.manual_seed(7 + step)
        index = torch.randint(6, (3,))
        decorrelation_step(model)
        patches = F.unfold(x[index], 3, padding=1, stride=2).transpose(1, 2).reshape(-1, 18)
        R = _reference_dalm_update(patches.double(), R, 0.05, 0.01)
        torch.testing.assert_close(conv.decorrelator.R.double(), R, rtol=1e-5, atol=1e-6)
    assert isinstance(conv, DecorrelatedConv2d)


def _images(n: int = 32, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 28, 28, generator=g),
                         torch.randint(0, 10, (n,), generator=g))


@pytest.mark.parametrize("rule", ["bp", "fa"])
def test_decorrelated_resnet_trains_under_fit(tmp_path, rule):
    torch.manual_seed(0)
    model = decorrelate(resnet18(width=8), block_size=16, lr=1e-3)
    rules = (DecorrelationRule(),) if rule == "bp" else (FeedbackAlignment(seed=0),
                                                         DecorrelationRule())
    before = model.conv1.decorrelator.R.clone()
    result = fit(model, _images(), _images(16, 1),
                 TrainConfig(epochs=1, batch_size=16, log_every=1, eval_batch_size=16),
                 tmp_path / rule, rules=rules, progress=False)
    assert torch.isfinite(torch.tensor(result["train_loss"]))
    assert not torch.equal(before, model.conv1.decorrelator.R)
    if rule == "fa":  # fit detached the rule: the feedback kernels are in its state only
        assert "feedback" not in model.layer1[0].conv1._buffers
        assert "layer1.0.conv1" in rules[0].state_dict()["feedback"]


def test_rules_that_do_not_apply_to_resnet_or_vit_raise():
    model = decorrelate(resnet18(width=8), block_size=16)
    with pytest.raises(ConfigError, match="BatchNorm"):
        NodePerturbation().attach(model)
    with pytest.raises(ConfigError, match=r"one after another.*ResNet"):
        DirectFeedbackAlignment().attach(model)
    with pytest.raises(ConfigError, match="attention"):
        NodePerturbation().attach(SmallViT(dim=16, depth=1, heads=2, mlp_dim=16))


def test_builders_take_device_and_dtype_and_decorrelate_is_idempotent():
    for model in (resnet18(width=4, dtype=torch.float64),
                  SmallViT(dim=8, depth=1, heads=2, mlp_dim=8, dtype=torch.float64)):
        assert {p.dtype for p in model.parameters()} == {torch.float64}
        decorrelate(model, block_size=4)
        first = {n: dec for n, dec in decorrelators(model)}
        decorrelate(model)  # already decorrelated layers are left alone
        assert {n: dec for n, dec in decorrelators(model)} == first
        assert all(dec.R.dtype == torch.float64 for dec in first.values())
    with pytest.raises(ConfigError, match="patch to divide image_size"):
        SmallViT(image_size=28, patch=5)
