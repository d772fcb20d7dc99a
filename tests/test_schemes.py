import json

import numpy as np
import pytest

from auditor.errors import InputError
from auditor.schemes import BUILTIN_SCHEMES, get_scheme, infer_scheme, load_scheme_file, scheme_from_json

LFPW = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data" / "lfpw"


@pytest.mark.parametrize("name,k,norm", [("300w_68", 68, (36, 45)), ("wflw_98", 98, (60, 72)),
                                         ("cofw_29", 29, (8, 9)), ("aflw_19", 19, None)])
def test_builtin_schemes(name, k, norm):
    s = BUILTIN_SCHEMES[name]
    assert s.num_points == k and s.normaliser_points == norm
    flip = s.flip_permutation
    assert np.array_equal(flip[flip], np.arange(k))
    if norm is not None:
        assert flip[norm[0]] == norm[1]
    assert s.contour_mask.any() and not s.contour_mask.all()
    for k_ in np.flatnonzero(s.contour_mask):
        assert s.chain_neighbours(int(k_)) is not None, f"contour point {k_} is on no chain"
    # a mirror partner shares its group and its contour flag
    assert all(s.groups[a] == s.groups[b] and s.contour_flags[a] == s.contour_flags[b] for a, b in s.flip_pairs)


def test_300w_flip_pairs_match_a_real_face():
    from auditor.io import read_dataset

    if not LFPW.is_dir():
        pytest.skip("shared LFPW data not present")
    ds = read_dataset(LFPW)
    s = ds.scheme

    def mirror_error(perm):
        errs = []
        for xy in ds.landmarks[:40]:
            m = xy.copy()
            m[:, 0] *= -1
            m = m[perm]
            a, b = xy - xy.mean(0), m - m.mean(0)
            u, _, vt = np.linalg.svd(b.T @ a)  # best proper rotation of the mirror onto the face (Procrustes)
            d = np.sign(np.linalg.det(u @ vt))
            aligned = b @ (u @ np.diag([1.0, d]) @ vt)
            errs.append(np.linalg.norm(aligned - a, axis=1).mean() / s.normaliser(xy[None])[0])
        return np.mean(errs)

    assert mirror_error(s.flip_permutation) < 0.1
    assert mirror_error(np.arange(68)) > 3 * mirror_error(s.flip_permutation)


def test_contour_tangents_follow_the_chain():
    s = BUILTIN_SCHEMES["300w_68"]
    xy = np.zeros((68, 2))
    xy[:17, 0] = np.arange(17) * 2.0  # a straight jaw along +x
    t = s.contour_tangents(xy)
    assert np.allclose(t[:17], [1.0, 0.0])
    assert s.chain_neighbours(0) == (0, 1) and s.chain_neighbours(36) == (41, 37)


def test_normalisers():
    s68, aflw = BUILTIN_SCHEMES["300w_68"], BUILTIN_SCHEMES["aflw_19"]
    xy = np.zeros((1, 68, 2))
    xy[0, 45] = [3.0, 4.0]
    assert s68.normaliser(xy)[0] == pytest.approx(5.0)
    pts = np.array([[[0.0, 0.0]] * 18 + [[8.0, 2.0]]])
    assert aflw.normaliser(pts, np.array([[0.0, 0.0, 4.0, 9.0]]))[0] == pytest.approx(6.0)
    assert aflw.normaliser(pts)[0] == pytest.approx(4.0)  # no box: the labels' extent, sqrt(8 * 2)
    assert aflw.normaliser(pts, np.full((1, 4), np.nan))[0] == pytest.approx(4.0)


def test_infer_and_get():
    assert infer_scheme(68).name == "300w_68" and infer_scheme(98).name == "wflw_98"
    assert get_scheme("WFLW").name == "wflw_98" and get_scheme("68").name == "300w_68"
    with pytest.raises(InputError, match="no built-in scheme has 50 points"):
        infer_scheme(50, source="a.pts")
    with pytest.raises(InputError, match="unknown scheme 'nope'"):
        get_scheme("nope")


@pytest.mark.parametrize("name", sorted(BUILTIN_SCHEMES))
def test_json_round_trip(tmp_path, name):
    s = BUILTIN_SCHEMES[name]
    path = tmp_path / "scheme.json"
    path.write_text(json.dumps(s.to_json()))
    back = load_scheme_file(path)
    assert back == s and get_scheme(str(path)) == s


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.pop("points"), "missing field 'points'"),
    (lambda d: d["points"].__setitem__(0, {"group": "x"}), r"points\[0\].*missing field 'name'"),
    (lambda d: d["flip_pairs"].append([0]), r"flip_pairs\[\d+\]"),
    (lambda d: d.__setitem__("normaliser", {"kind": "ruler"}), "normaliser kind"),
    (lambda d: d["contours"].append({"points": [0, 999]}), "contour"),
    (lambda d: d["flip_pairs"].append([0, 1]), "two flip pairs"),
])
def test_bad_scheme_json(tmp_path, mutate, message):
    data = BUILTIN_SCHEMES["aflw_19"].to_json()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=message) as e:
        load_scheme_file(path)
    assert "bad.json" in str(e.value)


def test_scheme_file_not_json(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"name": "x",\n "points": [}')
    with pytest.raises(InputError, match=r"s.json:2: invalid JSON"):
        load_scheme_file(path)
    with pytest.raises(InputError, match="wrong type"):
        scheme_from_json({"name": 3, "points": []})
