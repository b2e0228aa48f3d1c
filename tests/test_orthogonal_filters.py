"""The additive-filter RNN's filter options: determinant, fixed direction, gathers."""

from __future__ import annotations

import pytest
import torch

from signalprop.errors import ConfigError
from signalprop.nn.orthogonal_filters import FILTERS, make_filter, smallest_angle
from signalprop.nn.orthogonal_rnn import AdditiveFilterRNN


def _draw(kind: str, n: int, seed: int) -> torch.Tensor:
    return make_filter(kind, n, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)[0]


@pytest.mark.parametrize("kind", FILTERS)
@pytest.mark.parametrize("n", [7, 8])
def test_every_filter_is_orthogonal(kind, n):
    o = _draw(kind, n, 0)
    assert torch.allclose(o @ o.t(), torch.eye(n, dtype=o.dtype), atol=1e-10)


@pytest.mark.parametrize("seed", range(6))
def test_determinant_and_fixed_direction(seed):
    n = 16
    plus, minus, free = (_draw(k, n, seed) for k in ("haar-det+1", "haar-det-1",
                                                     "haar-no-fixed"))
    assert torch.linalg.det(plus).item() == pytest.approx(1.0)
    assert torch.linalg.det(minus).item() == pytest.approx(-1.0)
    assert torch.linalg.det(free).item() == pytest.approx(1.0)
    assert smallest_angle(minus) < 1e-6  # det -1, even n: an exact +1 eigenvalue
    assert smallest_angle(plus) > 1e-4  # generically none
    assert smallest_angle(free) > 1e-4
    # the fixed direction is the only change: O and the modified O agree off that plane
    v = torch.linalg.svd(minus - torch.eye(n, dtype=minus.dtype)).Vh[-1]
    w = torch.linalg.svd(minus + torch.eye(n, dtype=minus.dtype)).Vh[-1]
    basis = torch.stack([v, w], 1)
    rest = torch.eye(n, dtype=minus.dtype) - basis @ basis.t()
    assert torch.allclose(free @ rest, minus @ rest, atol=1e-10)
    assert torch.allclose(free @ v, w, atol=1e-10)  # v+ is turned by pi/2 onto v-


def test_det_choice_keeps_the_haar_draw_up_to_one_column():
    base = _draw("haar", 8, 3)
    for kind in ("haar-det+1", "haar-det-1"):
        fixed = _draw(kind, 8, 3)
        assert torch.allclose(fixed[:, 1:], base[:, 1:])
        assert torch.allclose(fixed[:, 0].abs(), base[:, 0].abs())


def test_gathers_and_identity():
    o, perm = make_filter("identity", 5)
    assert torch.equal(o, torch.eye(5)) and torch.equal(perm, torch.arange(5))
    o, perm = make_filter("cycle", 5)
    h = torch.arange(5.0).unsqueeze(0)
    assert torch.equal(h @ o.t(), h[:, perm]) and torch.equal(h[:, perm][0, 1:], h[0, :-1])
    assert smallest_angle(o) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ConfigError, match="filter"):
        make_filter("householder", 4)


@pytest.mark.parametrize("kind", ["identity", "haar-det-1", "haar-no-fixed"])
def test_rnn_with_each_new_filter_matches_its_autograd_loop(kind):
    torch.manual_seed(0)
    fast = AdditiveFilterRNN(3, 6, beta=0.2, filter=kind, dtype=torch.float64)
    slow = AdditiveFilterRNN(3, 6, beta=0.2, filter=kind, impl="loop", dtype=torch.float64)
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(4, 9, 3, dtype=torch.float64)
    out_fast, out_slow = fast(x)[0], slow(x)[0]
    assert torch.allclose(out_fast, out_slow, atol=1e-12)
    out_fast.square().sum().backward()
    out_slow.square().sum().backward()
    assert torch.allclose(fast.cell.weight_hh.grad, slow.cell.weight_hh.grad, atol=1e-10)
    assert fast.cell.filter_kind == kind and "filter=" in repr(fast.cell)
