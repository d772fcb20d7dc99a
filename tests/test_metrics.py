import numpy as np
import pytest

from auditor.metrics import auc, ced_curve, failure_rate, nme, point_errors, summary


def test_nme_hand_computed():
    target = np.zeros((2, 2, 2))
    pred = np.array([[[3.0, 4.0], [0.0, 1.0]], [[0.0, 0.0], [6.0, 8.0]]])
    assert np.allclose(point_errors(pred, target, np.array([10.0, 5.0])), [[0.5, 0.1], [0.0, 2.0]])
    assert np.allclose(nme(pred, target, np.array([10.0, 5.0])), [0.3, 1.0])
    mask = np.array([[True, False], [False, False]])
    out = nme(pred, target, np.array([10.0, 5.0]), mask)
    assert out[0] == pytest.approx(0.5) and np.isnan(out[1])


def test_failure_rate_auc_ced():
    e = np.array([0.02, 0.05, 0.09, 0.2])
    assert failure_rate(e, 0.08) == 0.5 and failure_rate(e, 0.10) == 0.25
    # AUC@0.1 = mean(max(0, 1 - e / 0.1)) = (0.8 + 0.5 + 0.1 + 0) / 4
    assert auc(e, 0.10) == pytest.approx(0.35)
    assert auc(e, 0.08) == pytest.approx((0.75 + 0.375) / 4)
    t, f = ced_curve(e, 0.10, 11)
    assert np.allclose(t, np.linspace(0, 0.1, 11))
    assert np.allclose(f, [0, 0, 0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5, 0.75, 0.75])
    # the sampled CED integrates to the exact AUC
    t, f = ced_curve(e, 0.10, 100001)
    assert np.trapezoid(f, t) / 0.10 == pytest.approx(auc(e, 0.10), abs=1e-4)
    s = summary(e)
    assert s["nme"] == pytest.approx(0.09) and s["fr@0.10"] == 0.25


def test_shape_check():
    with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
        point_errors(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)), np.ones(2))
