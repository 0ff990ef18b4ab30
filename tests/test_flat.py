import copy

import torch

from losslab import data
from losslab.flat import FlatModel, evaluate, evaluate_point
from losslab.models import build_model


def _model(bn=False, name="simplecnn"):
    torch.manual_seed(0)
    return build_model({"name": name, "batchnorm": bn}, (1, 8, 8), 10)


def test_flatten_params_round_trip():
    m = _model()
    fm = FlatModel(m)
    vec = fm.flatten()
    assert vec.numel() == sum(p.numel() for p in m.parameters()) == fm.numel
    views = fm.params(vec)
    for (name, p), (vname, v) in zip(m.named_parameters(), views.items()):
        assert name == vname and torch.equal(p, v)
    other = _model()
    FlatModel(other).load_into(vec * 2)
    assert torch.equal(FlatModel(other).flatten(), vec * 2)


def test_functional_forward_equals_module_and_does_not_mutate():
    m = _model().eval()
    fm = FlatModel(m)
    x = torch.randn(5, 1, 8, 8)
    vec = fm.flatten()
    assert torch.allclose(fm.forward(vec, x), m(x), atol=1e-6)
    before = copy.deepcopy(m.state_dict())
    out = fm.forward(vec + 0.1, x)
    assert not torch.allclose(out, m(x))
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])


def test_batched_params_work_under_vmap():
    m = _model().eval()
    fm = FlatModel(m)
    x = torch.randn(3, 1, 8, 8)
    vecs = torch.stack([fm.flatten(), fm.flatten() * 0.5])
    batched = torch.func.vmap(lambda v: fm.forward(v, x))(vecs)
    assert torch.allclose(batched[1], fm.forward(vecs[1], x), atol=1e-5)


def test_evaluate_matches_plain_forward_loss_and_accuracy():
    ds = data.load_dataset("digits")
    m = _model().eval()
    fm = FlatModel(m)
    res = evaluate(fm, fm.flatten(), ds.test_x, ds.test_y, "classification", batch_size=100)
    out = m(ds.test_x)
    assert abs(res["loss"] - torch.nn.functional.cross_entropy(out, ds.test_y).item()) < 1e-5
    assert abs(res["accuracy"] - (out.argmax(1) == ds.test_y).float().mean().item()) < 1e-9


def test_bn_recompute_equals_update_bn_on_a_loaded_module():
    ds = data.load_dataset("digits")
    ev = data.eval_data(ds, 200, 200, 128, seed=0)
    m = _model(bn=True)
    fm = FlatModel(m)
    vec = fm.flatten() * 1.1
    bufs = fm.recompute_bn(vec, ev.bn_x, batch_size=64)
    ref = copy.deepcopy(m)
    fm.load_into(vec, ref)
    torch.optim.swa_utils.update_bn(list(ev.bn_x.split(64)), ref)
    for k, v in ref.named_buffers():
        assert torch.allclose(bufs[k].float(), v.float(), atol=1e-6), k
    # the module's own statistics are untouched
    assert torch.equal(dict(m.named_buffers())["features.1.running_mean"], torch.zeros(16))
    res = evaluate_point(fm, vec, ev, "classification")
    assert set(res) == {"train", "test"} and res["test"]["loss"] > 0
    assert "recomputed" in fm.bn_policy(128) and "none" in FlatModel(_model()).bn_policy(128)


def test_filter_normalisation_is_defined_once_for_planes_and_tunnels():
    """Each filter of a direction gets its optimum filter's norm; biases get zero; [k, D] works row-wise."""
    from losslab import planes, tunnels
    from losslab.flat import FlatModel, filter_normalise
    from losslab.models import build_model

    torch.manual_seed(0)
    fm = FlatModel(build_model({"name": "simplecnn", "width": 0.5}, (1, 8, 8), 10))
    w = fm.flatten()
    d = torch.randn(3, fm.numel)
    out = filter_normalise(d, w, fm)
    for row in range(3):
        assert torch.equal(out[row], filter_normalise(d[row], w, fm))
    p, q = fm.params(out[0]), fm.params(w)
    for name, t in q.items():
        if t.ndim == 1:
            assert not p[name].any(), name
        else:
            assert torch.allclose(p[name].reshape(t.shape[0], -1).norm(dim=1), t.reshape(t.shape[0], -1).norm(dim=1))
    # both stages use it: a filter-normalised plane direction and a tunnel direction share its zero biases
    pl = planes.random_plane(w, 3, "filter", layout=fm)
    tu = tunnels.random_directions(fm, w, 2, "filter", torch.Generator().manual_seed(3))
    for vec in (pl.e1, tu[0]):
        assert not fm.params(vec)["head.bias"].any()
