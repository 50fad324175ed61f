"""FID InceptionV3 port: wiring checked against pytorch-fid's pool3 with seeded stand-in weights."""

import json
from pathlib import Path

import numpy as np
import pytest

from spade_tf.errors import SpadeError

FIXTURES = Path(__file__).parents[2] / "shared" / "fixtures" / "fid_inception"
pytestmark = pytest.mark.skipif(not (FIXTURES / "architecture.json").is_file(),
                                reason=f"FID Inception fixtures missing: {FIXTURES}")


@pytest.fixture(scope="module")
def arch():
    return json.loads((FIXTURES / "architecture.json").read_text())


def stand_in_weights(arch):
    """The fixture README's seeded scheme: tensor i drawn from RandomState(i) in float64, cast to float32."""
    state = {}
    for i, (name, shape) in enumerate(arch["state_dict"]):
        rs = np.random.RandomState(i)
        if name.endswith(".conv.weight"):
            v = rs.standard_normal(shape) * np.sqrt(2.0 / (shape[1] * shape[2] * shape[3]))
        elif name.endswith(".bn.weight"):
            v = 1 + 0.1 * rs.standard_normal(shape)
        elif name.endswith(".bn.bias") or name.endswith(".bn.running_mean"):
            v = 0.1 * rs.standard_normal(shape)
        elif name.endswith(".bn.running_var"):
            v = rs.uniform(0.5, 1.5, shape)
        elif name == "fc.weight":
            v = rs.standard_normal(shape) * np.sqrt(1.0 / 2048)
        elif name == "fc.bias":
            v = 0.01 * rs.standard_normal(shape)
        else:
            raise AssertionError(f"unexpected tensor {name}")
        state[name] = v.astype(np.float32)
    return state


@pytest.fixture(scope="module")
def model(arch):
    from spade_tf.backbones.inception import FIDInceptionV3

    return FIDInceptionV3(stand_in_weights(arch))


def test_state_dict_names_and_shapes_match_pytorch_fid(arch):
    from spade_tf.backbones.inception import state_dict_spec

    assert state_dict_spec() == [(n, tuple(s)) for n, s in arch["state_dict"]]


@pytest.mark.parametrize("size", ["299", "256"])
def test_pool3_matches_pytorch_fid_with_stand_in_weights(model, size):
    with np.load(FIXTURES / "images.npz") as f:
        images = f[f"images_{size}"].astype(np.float32) / 255.0
    with np.load(FIXTURES / "wiring_random_weights.npz") as f:
        expected = f[f"pool3_{size}"]
    pool3 = np.asarray(model(images))
    assert pool3.shape == (8, 2048)
    # A wrong pooling mode is off by ~0.04; the README asks for ~1e-3.
    np.testing.assert_allclose(pool3, expected, atol=1e-3, rtol=0)


def test_missing_weights_message_says_where_to_get_them(tmp_path):
    from spade_tf.backbones.inception import FIDInceptionV3

    for weights in (None, tmp_path / "pt_inception-2015-12-05-6726825d.pth"):  # None: offline, empty cache
        with pytest.raises(SpadeError) as e:
            FIDInceptionV3(weights)
        msg = str(e.value)
        assert "pt_inception-2015-12-05-6726825d.pth" in msg and "github.com/mseitzer/pytorch-fid" in msg
        assert "--features alexnet" in msg


def test_pth_with_wrong_sha256_is_refused(tmp_path):
    from spade_tf.backbones.inception import load_inception_weights

    bad = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    bad.write_bytes(b"truncated download" * 100)
    with pytest.raises(SpadeError, match="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"):
        load_inception_weights(bad)


def test_npz_is_checked_by_its_tensors_not_by_what_it_says(tmp_path, arch, monkeypatch):
    from spade_tf.backbones import inception
    from spade_tf.weights import tensor_digest

    state = stand_in_weights(arch)
    plain = tmp_path / "plain.npz"
    np.savez(plain, **state)
    # a field claiming provenance buys nothing
    marked = tmp_path / "marked.npz"
    np.savez(marked, __source_sha256__=np.array(inception.WEIGHTS_SHA256_PREFIX + "0" * 56), **state)
    for path in (plain, marked):
        with pytest.raises(SpadeError, match="pinned digest"):
            inception.load_inception_weights(path)
    # with the digest of these tensors pinned, the same tensors pass and any change to one fails
    pinned = tensor_digest({k: v for k, v in state.items() if not k.startswith("fc.")})
    monkeypatch.setattr(inception, "INCEPTION_TENSORS_SHA256", pinned)
    loaded = inception.load_inception_weights(plain)
    np.testing.assert_array_equal(loaded["Mixed_7c.branch_pool.conv.weight"],
                                  state["Mixed_7c.branch_pool.conv.weight"])
    altered = dict(state)
    altered["Mixed_5b.branch1x1.bn.running_var"] = altered["Mixed_5b.branch1x1.bn.running_var"].copy()
    altered["Mixed_5b.branch1x1.bn.running_var"][0] += 1e-3
    np.savez(tmp_path / "altered.npz", **altered)
    with pytest.raises(SpadeError, match="altered"):
        inception.load_inception_weights(tmp_path / "altered.npz")
    # verify=False: any weights of the right shapes (wiring checks), shapes still checked
    assert inception.load_inception_weights(tmp_path / "altered.npz", verify=False)
    broken = dict(state)
    broken["Mixed_6b.branch7x7_2.conv.weight"] = broken["Mixed_6b.branch7x7_2.conv.weight"][:, :, :, :3]
    np.savez(tmp_path / "broken.npz", **broken)
    with pytest.raises(SpadeError, match="Mixed_6b.branch7x7_2.conv.weight"):
        inception.load_inception_weights(tmp_path / "broken.npz", verify=False)
