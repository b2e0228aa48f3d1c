"""Every public module of ``signalprop.nn`` follows the ``torch.nn`` conventions (issue 19).

One test, parametrised over the registry (:mod:`signalprop.nn.registry`) and the checks below:
finite gradients, ``torch.func.grad`` equal to autograd, ``vmap`` equal to a loop over the batch,
``jvp`` equal to a central difference, bfloat16 autocast with the documented
output dtype, ``torch.compile`` equal to eager (slow: compiling takes seconds per module),
state_dict / deepcopy / pickle round trips, ``device=``/``dtype=`` factory arguments and
construction on the meta device, and an ``extra_repr``.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import pickle
import pkgutil

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad

import signalprop.nn
from signalprop.nn.registry import MODULES, NOT_STANDALONE, ModuleSpec, output_tensor


def _build(spec: ModuleSpec, seed: int = 0, **factory) -> nn.Module:
    torch.manual_seed(seed)
    return spec.build(**factory)


def _loss(output) -> torch.Tensor:
    return output_tensor(output).float().square().mean()


def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p for k, p in model.named_parameters() if p.requires_grad}


def check_finite_gradients(spec: ModuleSpec) -> None:
    model = _build(spec)
    x = spec.example().requires_grad_()
    _loss(model(x)).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for name, p in _trainable(model).items():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"


def check_func_grad_matches_autograd(spec: ModuleSpec) -> None:
    model = _build(spec, dtype=torch.float64)
    if spec.batch_norm:  # running statistics are an in-place buffer update (torch limitation)
        model.eval()
    x = spec.example(dtype=torch.float64)
    params = {k: p.detach() for k, p in _trainable(model).items()}
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def loss(p, inputs):
        return _loss(functional_call(model, p, (inputs,)))

    by_func = grad(loss, argnums=(0, 1))(params, x)
    for key, value in model.state_dict().items():  # a transform leaves the module untouched
        assert torch.equal(value, state[key]), f"{key} changed under torch.func.grad"
    x_auto = x.clone().requires_grad_()
    _loss(model(x_auto)).backward()
    torch.testing.assert_close(by_func[1], x_auto.grad)
    for name, p in _trainable(model).items():
        torch.testing.assert_close(by_func[0][name], p.grad, msg=f"dL/d{name} differs")


def check_vmap_matches_loop(spec: ModuleSpec) -> None:
    model = _build(spec).eval()
    x = spec.example()

    def one(sample):
        return output_tensor(model(sample))

    if not spec.vmap:  # a documented torch limitation (torch.nn.RNN has no batching rule)
        with pytest.raises(RuntimeError):
            torch.func.vmap(one)(x.unsqueeze(1))
        return
    with torch.no_grad():
        looped = torch.stack([one(x[i:i + 1]) for i in range(x.shape[0])])
        torch.testing.assert_close(torch.func.vmap(one)(x.unsqueeze(1)), looped)


def check_jvp_matches_finite_difference(spec: ModuleSpec) -> None:
    model = _build(spec, dtype=torch.float64).eval()
    x = spec.example(dtype=torch.float64)
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(2),
                            dtype=torch.float64)

    def f(inputs):
        return output_tensor(model(inputs))

    if not spec.jvp:  # a documented torch limitation (no forward AD for CPU flash attention)
        with pytest.raises(NotImplementedError):
            torch.func.jvp(f, (x,), (direction,))
        return
    _, tangent = torch.func.jvp(f, (x,), (direction,))
    eps = 1e-6
    with torch.no_grad():
        central = (f(x + eps * direction) - f(x - eps * direction)) / (2 * eps)
    torch.testing.assert_close(tangent, central, rtol=1e-5, atol=1e-7)


def check_bf16_autocast(spec: ModuleSpec) -> None:
    model = _build(spec)
    x = spec.example().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = output_tensor(model(x))
        assert out.dtype == spec.autocast_dtype
        out.float().square().mean().backward()
    assert torch.isfinite(out.float()).all()
    assert x.grad is not None and x.grad.dtype == x.dtype and torch.isfinite(x.grad).all()
    for name, p in _trainable(model).items():
        assert p.grad is not None and p.grad.dtype == p.dtype, name
        assert torch.isfinite(p.grad).all(), name


def check_compile_matches_eager(spec: ModuleSpec) -> None:
    """In float64: in float32 the compiled backward's reordered sums differ from eager by
    rounding, which ill-conditioned least-squares solves amplify to ~1e-4 relative."""
    eager = _build(spec, dtype=torch.float64)
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=spec.fullgraph)
    x_eager = spec.example(dtype=torch.float64).requires_grad_()
    x_compiled = spec.example(dtype=torch.float64).requires_grad_()
    out_eager, out_compiled = eager(x_eager), compiled(x_compiled)
    close = {"rtol": 1e-7, "atol": 1e-9}
    torch.testing.assert_close(output_tensor(out_compiled), output_tensor(out_eager), **close)
    _loss(out_eager).backward()
    _loss(out_compiled).backward()
    torch.testing.assert_close(x_compiled.grad, x_eager.grad, **close)
    grads = dict(compiled_model.named_parameters())
    for name, p in _trainable(eager).items():
        torch.testing.assert_close(grads[name].grad, p.grad, **close, msg=f"dL/d{name} differs")


def _same_output(a: nn.Module, b: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(output_tensor(a(x)), output_tensor(b(x)), rtol=0, atol=0)


def check_serialisation(spec: ModuleSpec) -> None:
    x = spec.example()
    model = _build(spec, seed=0).eval()
    other = _build(spec, seed=1).eval()
    other.load_state_dict(model.state_dict())
    _same_output(model, other, x)
    _same_output(model, copy.deepcopy(model), x)
    _same_output(model, pickle.loads(pickle.dumps(model)), x)


def _tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*model.named_parameters(), *model.named_buffers()]


def check_factory_arguments(spec: ModuleSpec) -> None:
    stateful = bool(_tensors(_build(spec)))
    takes = set(inspect.signature(spec.cls).parameters)
    if stateful:  # like torch.nn: modules with tensors take device and dtype
        assert {"device", "dtype"} <= takes, f"{spec.cls.__name__} lacks device/dtype arguments"
    model = _build(spec, device="cpu", dtype=torch.float64)
    for name, t in _tensors(model):
        assert t.device.type == "cpu", name
        if t.is_floating_point():
            assert t.dtype == torch.float64, f"{name} is {t.dtype}"
    out = output_tensor(model(spec.example(dtype=torch.float64)))
    assert out.dtype == torch.float64
    for make in (lambda: _build(spec, device="meta"), lambda: _meta_context(spec)):
        for name, t in _tensors(make()):
            assert t.device.type == "meta", f"{name} is on {t.device}"


def _meta_context(spec: ModuleSpec) -> nn.Module:
    with torch.device("meta"):
        return _build(spec)


def check_extra_repr(spec: ModuleSpec) -> None:
    model = _build(spec)
    assert type(model).extra_repr is not nn.Module.extra_repr, "no extra_repr"
    assert model.extra_repr()


CHECKS = {
    "finite_gradients": check_finite_gradients,
    "func_grad": check_func_grad_matches_autograd,
    "vmap": check_vmap_matches_loop,
    "jvp": check_jvp_matches_finite_difference,
    "bf16_autocast": check_bf16_autocast,
    "compile": check_compile_matches_eager,
    "serialisation": check_serialisation,
    "factory_arguments": check_factory_arguments,
    "extra_repr": check_extra_repr,
}


def _cases():
    for name in MODULES:
        for check in CHECKS:
            marks = [pytest.mark.slow] if check == "compile" else []
            yield pytest.param(name, check, marks=marks, id=f"{name}-{check}")


@pytest.mark.parametrize("name, check", list(_cases()))
def test_module_follows_torch_nn_conventions(name: str, check: str) -> None:
    CHECKS[check](MODULES[name])


def test_registry_covers_every_public_module() -> None:
    registered = {spec.cls for spec in MODULES.values()}
    missing = []
    for info in pkgutil.iter_modules(signalprop.nn.__path__):
        module = importlib.import_module(f"signalprop.nn.{info.name}")
        for cls_name, cls in vars(module).items():
            if (inspect.isclass(cls) and issubclass(cls, nn.Module) and not cls_name.startswith("_")
                    and cls.__module__ == module.__name__ and cls not in registered
                    and cls_name not in NOT_STANDALONE):
                missing.append(f"{module.__name__}.{cls_name}")
    assert not missing, f"public modules missing from signalprop.nn.registry: {missing}"
