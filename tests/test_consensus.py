"""Consensus of several annotators: planted annotators of known bias, spread (along / across) and gross-error rate
over the sample set's true shapes, recovered directionally (rankings, relative errors, AUROC), plus the degenerate
datasets."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal, rankdata, spearmanr

from auditor.consensus import (
    SHAPE,
    ConsensusConfig,
    annotator_departures,
    annotator_table,
    coco_sigmas,
    estimate_consensus,
    face_agreement,
    local_frames,
    point_tolerances,
    tolerances_from_single,
)
from auditor.geometry import face_box
from auditor.io import read_dataset
from auditor.noise import AnnotatorConfig, draw_annotators
from auditor.schemes import get_scheme

TRUTH = Path(__file__).resolve().parents[1] / "sample_data" / "truth"
NAMES = ("eli", "ben", "dev", "ana", "cai")  # best first; sorted differently, so the order is looked up
SPREADS = np.array([0.01, 0.02, 0.03, 0.04, 0.05])  # s.d. across, normaliser units, times the group's factor
GROUP_FACTOR = {"jaw": 1.4, "brows": 1.2, "nose": 1.0, "eyes": 0.7, "mouth": 0.9}
ALONG_FACTOR = {"jaw": 2.0, "brows": 1.5, "nose": 1.0, "eyes": 0.6, "mouth": 1.0}  # s.d. along / across, if planted
GROSS_RATES = np.array([0.0, 0.01, 0.02, 0.03, 0.05])
JAW_BIAS = np.array([[0.03, -0.01], [-0.02, 0.015], [0.0, 0.0], [0.025, -0.015], [-0.035, 0.01]])  # along, across


@dataclass(frozen=True)
class Planted:
    """Label sets (M, K, 2) px of subjects (M,) by annotators (M,) around true shapes (S, K, 2), with the truth."""

    truth: np.ndarray
    normaliser: np.ndarray  # (S,) px
    scale: np.ndarray  # (S,) sqrt of the true face box's area, px
    xy: np.ndarray
    subject: np.ndarray
    who: np.ndarray  # (M,) index into NAMES
    gross: np.ndarray  # (M, K) planted gross errors
    bias: np.ndarray  # (A, G, 2), centred as the estimator centres it
    spread: np.ndarray  # (A, G, 2) along / across

    @property
    def names(self) -> list[str]:
        return [NAMES[a] for a in self.who]


def plant(truth: np.ndarray, seed: int, *, per_subject: int = 3, num_annotators: int = 5,
          anisotropic: bool = False) -> Planted:
    """Each subject labelled by `per_subject` of the first `num_annotators` planted annotators, the click's s.d.
    along each point's frame (at the truth) `ALONG_FACTOR` times the one across if `anisotropic`, else the same; a
    gross error moves a label 0.2 to 0.5 normaliser units from the truth in a random direction (a label on the
    wrong point)."""
    rng = np.random.default_rng(seed)
    scheme = get_scheme("300w_68")
    s, k = truth.shape[:2]
    a = num_annotators
    groups = scheme.group_names
    group = np.array([groups.index(g) for g in scheme.groups])
    normaliser = scheme.normaliser(truth)
    box = face_box(truth)
    scale = np.sqrt(np.prod(box[:, 2:] - box[:, :2], axis=1))
    across = SPREADS[:a, None] * np.array([GROUP_FACTOR[g] for g in groups])
    along = across * np.array([ALONG_FACTOR[g] for g in groups]) if anisotropic else across
    spread = np.stack([along, across], axis=-1)
    bias = rng.normal(0, 0.004, (a, len(groups), 2))
    bias[:, groups.index("jaw")] = JAW_BIAS[:a]
    subject = np.repeat(np.arange(s), per_subject)
    who = np.concatenate([rng.permutation(a)[:per_subject] for _ in range(s)])
    order = rng.permutation(len(subject))
    subject, who = subject[order], who[order]
    counts = np.zeros((a, len(groups)))
    np.add.at(counts, (who[:, None], group[None, :]), 1)
    bias -= (counts[..., None] * bias).sum(0) / counts.sum(0)[:, None]  # the estimator's identifiability constraint
    n = normaliser[subject, None, None]
    noise = rng.normal(size=(len(subject), k, 2)) * spread[who][:, group]
    xy = truth[subject] + np.einsum("mkci,mki->mkc", local_frames(truth, scheme)[subject],
                                    bias[who][:, group] + noise) * n
    gross = rng.random((len(subject), k)) < GROSS_RATES[who][:, None]
    angle, size = rng.uniform(0, 2 * np.pi, gross.shape), rng.uniform(0.2, 0.5, gross.shape)
    offset = np.stack([np.cos(angle), np.sin(angle)], -1) * (size * normaliser[subject, None])[..., None]
    xy = np.where(gross[..., None], truth[subject] + offset, xy)
    return Planted(truth, normaliser, scale, xy, subject, who, gross, bias, spread)


def nme(xy: np.ndarray, truth: np.ndarray, normaliser: np.ndarray) -> float:
    """Mean distance of positions (N, K, 2) to the truth (N, K, 2), normaliser units (N,), NaN left out."""
    return float(np.nanmean(np.linalg.norm(xy - truth, axis=-1) / normaliser[:, None]))


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `score` ranking the positives first (Mann-Whitney)."""
    ranks = rankdata(score)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def stacked(xy: np.ndarray, subject: np.ndarray) -> np.ndarray:
    """(S, J, K, 2) each subject's label sets (M, K, 2) side by side, NaN where a subject has fewer than J."""
    s = subject.max() + 1
    out = np.full((s, np.bincount(subject).max(), *xy.shape[1:]), np.nan)
    seen = np.zeros(s, dtype=np.int64)
    for m, who in enumerate(subject):
        out[who, seen[who]] = xy[m]
        seen[who] += 1
    return out


def with_gross_errors(p: Planted, rate: float, seed: int) -> Planted:
    """`p` with a further `rate` of its labels moved 0.3 normaliser units in a random direction."""
    rng = np.random.default_rng(seed)
    gross = rng.random(p.gross.shape) < rate
    angle = rng.uniform(0, 2 * np.pi, gross.shape)
    offset = np.stack([np.cos(angle), np.sin(angle)], -1) * 0.3 * p.normaliser[p.subject, None, None]
    xy = np.where(gross[..., None], p.truth[p.subject] + offset, p.xy)
    return Planted(p.truth, p.normaliser, p.scale, xy, p.subject, p.who, p.gross | gross, p.bias, p.spread)


@pytest.fixture(scope="module")
def scheme():
    return get_scheme("300w_68")


@pytest.fixture(scope="module")
def shapes():
    """(300, 68, 2) true shapes of the sample set."""
    return read_dataset(TRUTH).landmarks[:300].astype(np.float64)


@pytest.fixture(scope="module")
def planted(shapes):
    return plant(shapes, 0)


@pytest.fixture(scope="module")
def consensus(planted, scheme):
    return estimate_consensus(planted.xy, planted.subject, planted.names, scheme, planted.normaliser)


@pytest.fixture(scope="module")
def anisotropic(shapes):
    return plant(shapes, 0, anisotropic=True)


def test_consensus_beats_the_plain_mean_median_and_best_annotator(planted, consensus):
    truth, norm = planted.truth, planted.normaliser
    labels = stacked(planted.xy, planted.subject)
    error = nme(consensus.xy, truth, norm)
    per_label = np.linalg.norm(planted.xy - truth[planted.subject], axis=-1) / norm[planted.subject, None]
    per_annotator = np.array([per_label[planted.who == a].mean() for a in range(5)])
    best = int(np.argmin(per_annotator))
    theirs = np.unique(planted.subject[planted.who == best])
    assert error < nme(labels.mean(1), truth, norm)
    assert error < nme(np.median(labels, axis=1), truth, norm)
    assert error <= 0.8 * np.median(per_annotator)
    assert error <= per_annotator[best]
    assert nme(consensus.xy[theirs], truth[theirs], norm[theirs]) < per_annotator[best]  # on the same faces
    assert consensus.xy.shape == truth.shape and consensus.variance.shape == truth.shape
    assert np.all(consensus.variance > 0)


def test_ranking_of_annotators_and_their_intervals(planted, consensus, scheme):
    table = annotator_table(consensus, planted.xy, planted.subject, planted.names, scheme, planted.normaliser,
                            bootstrap=100)
    per_label = np.linalg.norm(planted.xy - planted.truth[planted.subject], axis=-1)
    per_label /= planted.normaliser[planted.subject, None]
    true_error = {NAMES[a]: per_label[planted.who == a].mean() for a in range(5)}
    assert spearmanr(table["mean_error"], [true_error[n] for n in table["annotator"]])[0] >= 0.9
    assert table["mean_error"].is_monotonic_increasing
    assert (table["mean_error_lo"] <= table["mean_error"]).all()
    assert (table["mean_error"] <= table["mean_error_hi"]).all()
    assert table["faces"].sum() == len(planted.xy) and table["points"].sum() == np.isfinite(planted.xy[..., 0]).sum()
    assert {"bias_along_jaw", "bias_across_jaw", "spread_along_jaw", "spread_across_jaw", "label_issues_per_100",
            "gross_rate", "spread"} <= set(table.columns)
    assert not {f"spread_{g}" for g in GROUP_FACTOR} & set(table.columns)
    by_name = table.set_index("annotator")
    assert by_name.loc[list(NAMES), "gross_rate"].is_monotonic_increasing  # planted 0 to 5 %
    assert by_name.loc[list(NAMES), "label_issues_per_100"].is_monotonic_increasing
    assert by_name.loc[list(NAMES), "spread"].is_monotonic_increasing


def test_biases_and_spreads_recovered(planted, consensus):
    order = [consensus.annotators.index(n) for n in NAMES]
    bias, spread = consensus.bias[order], consensus.spread[order]
    large = np.abs(planted.bias) >= 0.015  # the jaw's along / across biases
    assert large.sum() >= 4
    assert np.all(np.abs(bias[large] - planted.bias[large]) <= 0.2 * np.abs(planted.bias[large]))
    assert np.abs(bias - planted.bias).max() < 0.005
    assert np.all(np.abs(spread / planted.spread - 1) < 0.25)
    assert np.median(np.abs(spread / planted.spread - 1)) < 0.05
    assert np.allclose(consensus.gross_rate[order], [0, 0.01, 0.02, 0.03, 0.05], atol=0.015)


def test_anisotropic_spread_recovered_per_axis(anisotropic, scheme):
    """Along twice across on the jaw, 0.6 times on the eyes, equal on the nose and mouth: each axis recovered."""
    p = anisotropic
    c = estimate_consensus(p.xy, p.subject, p.names, scheme, p.normaliser)
    order = [c.annotators.index(n) for n in NAMES]
    spread = c.spread[order]  # (A, G, 2)
    assert spread.shape == (5, len(scheme.group_names), 2)
    assert np.all(np.abs(spread / p.spread - 1) < 0.25)
    assert np.median(np.abs(spread / p.spread - 1), axis=(0, 1)).max() < 0.05  # on each axis
    ratio = spread[..., 0] / spread[..., 1]
    planted_ratio = np.array([ALONG_FACTOR[g] for g in c.groups])
    assert np.all(np.abs(np.median(ratio, axis=0) / planted_ratio - 1) < 0.1)
    assert auroc(1 - c.agreement.ravel(), p.gross.ravel()) >= 0.99
    table = annotator_table(c, p.xy, p.subject, p.names, scheme, p.normaliser, bootstrap=0).set_index("annotator")
    np.testing.assert_allclose(table.loc[list(NAMES), "spread_along_jaw"], spread[:, 0, 0])
    np.testing.assert_allclose(table.loc[list(NAMES), "spread_across_eyes"], spread[:, 3, 1])
    jaw = np.array(scheme.groups) == "jaw"
    # the annotators alone place a jaw point less surely along the jaw than across it (the labels' shape, a
    # further witness by default, is about as sure both ways)
    alone = estimate_consensus(p.xy, p.subject, p.names, scheme, p.normaliser, config=ConsensusConfig(shape_rounds=0))
    assert np.all(alone.variance[:, jaw, 0] > alone.variance[:, jaw, 1])
    tol = point_tolerances(p.xy, p.subject, c, scheme, p.scale, normaliser=p.normaliser).groupby("group")
    assert tol["spread_along"].median()["jaw"] > 1.5 * tol["spread_across"].median()["jaw"]
    assert tol["spread_along"].median()["eyes"] < tol["spread_across"].median()["eyes"]


def test_gross_errors_get_low_agreement(planted, consensus):
    agreement = consensus.agreement
    assert agreement.shape == planted.xy.shape[:2] and np.all((agreement >= 0) & (agreement <= 1))
    assert planted.gross.sum() > 500
    assert auroc(1 - agreement.ravel(), planted.gross.ravel()) >= 0.99
    faces = face_agreement(consensus)
    assert faces.shape == (len(planted.xy),)
    worst = planted.gross.sum(1) >= 3
    assert np.median(faces[worst]) < np.median(faces[planted.gross.sum(1) == 0])


def test_point_sigmas_match_the_planted_spread(planted, consensus, scheme):
    tol = point_tolerances(planted.xy, planted.subject, consensus, scheme, planted.scale,
                           normaliser=planted.normaliser)
    sigma = coco_sigmas(tol)
    group = np.array([scheme.group_names.index(g) for g in scheme.groups])
    # the planted variance of a good label around the truth, mean over both axes: spread² plus bias²
    variance = (planted.spread[planted.who][:, group] ** 2 + planted.bias[planted.who][:, group] ** 2).mean(-1)
    variance = variance * (planted.normaliser / planted.scale)[planted.subject, None] ** 2
    good = ~planted.gross
    expected = np.sqrt((variance * good).sum(0) / good.sum(0))
    assert sigma.shape == (scheme.num_points,) and list(tol["point"]) == list(range(scheme.num_points))
    assert np.median(np.abs(sigma / expected - 1)) <= 0.15
    jaw = tol[(tol["group"] == "jaw") & tol["is_contour"]]
    assert (jaw["spread_along"] > jaw["spread_across"]).mean() > 0.8  # planted twice as wide along
    assert (tol["source"] == "annotators").all() and (tol["labels"] > 0).all()


def gaussian_posterior(labels: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """Mean (2,) and covariance (2, 2) of y from labels (.., z (2,), .., precision (2, 2), ..) under a flat prior."""
    precision = sum(lab[3] for lab in labels)
    return np.linalg.solve(precision, sum(lab[3] @ lab[1] for lab in labels)), np.linalg.inv(precision)


def test_consensus_and_agreements_match_a_naive_reference(shapes, scheme):
    """The vectorised EM's fixed point against a loop over subjects and points with 2 x 2 covariance matrices in image
    space (a naive reference): each label's covariance R diag(σ²) R^T n², the consensus the posterior of y under
    the labels' precisions times their agreements, its variance that posterior's along / across the frame, and
    each agreement the leave-one-out posterior probability of the Gaussian against the gross density."""
    p = plant(shapes[:20], 3, anisotropic=True)
    config = ConsensusConfig(iterations=300, tolerance=1e-9, shape_rounds=0)  # the reference knows no shape witness
    c = estimate_consensus(p.xy, p.subject, p.names, scheme, p.normaliser, config=config)
    frames = local_frames(c.xy, scheme)
    group = [scheme.group_names.index(g) for g in scheme.groups]
    index = {name: i for i, name in enumerate(c.annotators)}
    for s in range(0, 20, 3):
        n = p.normaliser[s]
        for k in range(0, 68, 5):
            frame = frames[s, k]
            labels = []  # (label set, bias-corrected label, its covariance, its weighted precision, its gross rate)
            for m in np.flatnonzero(p.subject == s):
                a = index[NAMES[p.who[m]]]
                covariance = frame @ np.diag(c.spread[a, group[k]] ** 2) @ frame.T * n**2
                labels.append((m, p.xy[m, k] - frame @ c.bias[a, group[k]] * n, covariance,
                               max(c.agreement[m, k], 1e-6) * np.linalg.inv(covariance), c.gross_rate[a]))
            mean, covariance = gaussian_posterior(labels)
            np.testing.assert_allclose(c.xy[s, k], mean, atol=1e-4 * n)
            np.testing.assert_allclose(c.variance[s, k], np.diag(frame.T @ covariance @ frame), rtol=1e-3)
            for i, (m, z, cov, _, rate) in enumerate(labels):
                centre, spread = gaussian_posterior(labels[:i] + labels[i + 1:])
                gross_cov = (config.gross_scale * n) ** 2 * np.eye(2)
                good = (1 - rate) * multivariate_normal(centre, cov + spread).pdf(z)
                bad = rate * multivariate_normal(centre, gross_cov + spread).pdf(p.xy[m, k])
                np.testing.assert_allclose(c.agreement[m, k], good / (good + bad), atol=1e-4)


def test_one_annotator_gives_the_labels_back(shapes, scheme):
    p = with_gross_errors(plant(shapes[:60], 1, per_subject=1, num_annotators=1), 0.02, 1)
    by_subject = p.xy[np.argsort(p.subject)]
    c = estimate_consensus(p.xy, p.subject, p.names, scheme, p.normaliser)
    np.testing.assert_allclose(c.xy, by_subject, rtol=1e-12)
    assert np.all(c.agreement == 1) and np.all(c.bias == 0) and c.annotators == ("eli",)
    table = annotator_table(c, p.xy, p.subject, p.names, scheme, p.normaliser, bootstrap=20)
    assert len(table) == 1 and table["mean_error"].iloc[0] < 1e-9 and table["label_issues_per_100"].iloc[0] == 0

    model = p.truth + np.random.default_rng(5).normal(0, 0.01, p.truth.shape) * p.normaliser[:, None, None]
    judged = estimate_consensus(p.xy, p.subject, p.names, scheme, p.normaliser, witnesses={"model": model})
    assert auroc(1 - judged.agreement.ravel(), p.gross.ravel()) >= 0.99
    assert set(judged.witness_spread) == {"model"} and judged.witness_spread["model"].shape == (5, 2)
    assert nme(judged.xy, p.truth, p.normaliser) < nme(by_subject, p.truth, p.normaliser)


@pytest.mark.filterwarnings("ignore:All-NaN slice")
def test_missing_points_and_unlabelled_subjects(shapes, scheme):
    p = plant(shapes[:120], 2)
    rng = np.random.default_rng(7)
    xy = np.where(rng.random(p.xy.shape[:2])[..., None] < 0.15, np.nan, p.xy)
    xy[p.subject == 4, 10] = np.nan  # nobody labelled point 10 of subject 4
    normaliser = np.append(p.normaliser, 50.0)  # subject 120: no label set at all
    c = estimate_consensus(xy, p.subject, p.names, scheme, normaliser)
    assert np.isnan(c.xy[4, 10]).all() and np.isnan(c.variance[4, 10]).all() and np.isnan(c.xy[120]).all()
    assert np.isnan(c.agreement[np.isnan(xy[..., 0])]).all()
    assert np.isfinite(c.agreement[np.isfinite(xy[..., 0])]).all()
    assert np.isfinite(c.spread).all() and np.isfinite(c.bias).all()
    median = np.nanmedian(stacked(xy, p.subject), axis=1)
    assert nme(c.xy[:120], p.truth, p.normaliser) < nme(median, p.truth, p.normaliser)


def test_precise_witnesses_lower_the_error(shapes, scheme):
    p = plant(shapes[:80], 4)
    rng = np.random.default_rng(11)
    search = p.truth + rng.normal(0, 0.005, p.truth.shape) * p.normaliser[:, None, None]
    search[rng.random(len(search)) < 0.2] = np.nan  # not searched on some faces
    quick = ConsensusConfig(iterations=40)
    alone = estimate_consensus(p.xy, p.subject, p.names, scheme, p.normaliser, config=quick)
    helped = estimate_consensus(p.xy, p.subject, p.names, scheme, p.normaliser, witnesses={"searched": search},
                                config=quick)
    assert nme(helped.xy, p.truth, p.normaliser) < 0.8 * nme(alone.xy, p.truth, p.normaliser)
    best = helped.spread[helped.annotators.index(NAMES[0])]
    assert np.all(helped.witness_spread["searched"] < best)
    assert 0 < helped.witness_gross_rate["searched"] < 0.02


def test_the_labels_shape_as_a_witness(shapes, scheme):
    """With `draw_annotators`' team (careless clicks along a contour as wide as a small gross error), the labels' own
    shape as a further witness brings the consensus nearer the truth and ranks the gross errors better."""
    truth = shapes[:150]
    labels, face, names, _, noise = draw_annotators(truth, scheme, [f"f{i}" for i in range(150)],
                                                    np.random.default_rng(7), AnnotatorConfig())
    gross = np.zeros(labels.shape[:2], dtype=bool)
    row = {f"{name}/f{f}": m for m, (name, f) in enumerate(zip(names, face, strict=True))}
    for label_set, point in noise[["image_id", "point"]].itertuples(index=False):
        gross[row[label_set], point] = True
    norm = scheme.normaliser(truth)
    alone = estimate_consensus(labels, face, names, scheme, norm, config=ConsensusConfig(shape_rounds=0))
    shaped = estimate_consensus(labels, face, names, scheme, norm)
    assert list(alone.witness_spread) == [] and list(shaped.witness_spread) == [SHAPE]
    assert nme(shaped.xy, truth, norm) < 0.8 * nme(alone.xy, truth, norm)
    judged = np.isfinite(shaped.agreement)
    assert (auroc(1 - shaped.agreement[judged], gross[judged])
            > auroc(1 - alone.agreement[judged], gross[judged]) + 0.005)
    assert shaped.iterations > alone.iterations  # summed over the passes
    with pytest.raises(ValueError, match="shape"):
        estimate_consensus(labels, face, names, scheme, norm, witnesses={SHAPE: shaped.xy})
    mine = estimate_consensus(labels, face, names, scheme, norm, witnesses={SHAPE: shaped.xy},
                              config=ConsensusConfig(shape_rounds=0, iterations=5))
    assert list(mine.witness_spread) == [SHAPE]


def test_no_shape_witness_with_one_label_set_per_subject(shapes, scheme):
    p = plant(shapes[:40], 6, per_subject=1)
    config = ConsensusConfig(iterations=20)
    model = p.truth + np.random.default_rng(2).normal(0, 0.01, p.truth.shape) * p.normaliser[:, None, None]
    default = estimate_consensus(p.xy, p.subject, p.names, scheme, p.normaliser, witnesses={"model": model},
                                 config=config)
    without = estimate_consensus(p.xy, p.subject, p.names, scheme, p.normaliser, witnesses={"model": model},
                                 config=ConsensusConfig(iterations=20, shape_rounds=0))
    np.testing.assert_array_equal(default.xy, without.xy)
    np.testing.assert_array_equal(default.agreement, without.agreement)
    assert list(default.witness_spread) == ["model"]


def test_sparse_annotator_is_shrunk_towards_the_others(shapes, scheme):
    p = plant(shapes[:80], 5)
    extra = p.truth[:2] + np.random.default_rng(3).normal(0, 0.08, (2, 68, 2)) * p.normaliser[:2, None, None]
    xy, subject = np.concatenate([p.xy, extra]), np.concatenate([p.subject, [0, 1]])
    names = p.names + ["rare", "rare"]

    def rare_spread(strength: float) -> tuple[np.ndarray, np.ndarray]:
        c = estimate_consensus(xy, subject, names, scheme, p.normaliser,
                               config=ConsensusConfig(prior_strength=strength, iterations=40))
        return c.spread[c.annotators.index("rare")], np.exp(np.log(c.spread).mean(0))

    free, _ = rare_spread(0.0)
    shrunk, typical = rare_spread(2.0)
    assert np.all(np.abs(np.log(shrunk / typical)) < np.abs(np.log(free / typical)))


def test_departures_list_the_worst_face_first(planted, consensus):
    who = planted.who
    target = int(np.flatnonzero(who == 1)[0])
    xy = planted.xy.copy()
    xy[target] += 0.3 * planted.normaliser[planted.subject[target]]
    table = annotator_departures(consensus, xy, planted.subject, planted.names, planted.normaliser, top=3)
    ben = table[table["annotator"] == "ben"]
    assert len(ben) == 3 and ben["label_set"].iloc[0] == target
    assert ben["mean_error"].is_monotonic_decreasing


def test_tolerances_from_one_annotator(shapes, scheme):
    p = with_gross_errors(plant(shapes[:200], 6, per_subject=1, num_annotators=1), 0.05, 6)
    tol = tolerances_from_single(p.xy, p.truth[p.subject], scheme, p.scale[p.subject],
                                 normaliser=p.normaliser[p.subject], source="searched")
    group = np.array([scheme.group_names.index(g) for g in scheme.groups])
    # one annotator: its bias is centred to 0
    expected = np.sqrt(np.mean(p.spread[0, group] ** 2, axis=-1)) * np.median(p.normaliser / p.scale)
    assert np.median(np.abs(coco_sigmas(tol) / expected - 1)) <= 0.15
    assert (tol["source"] == "searched").all() and list(tol.columns[:4]) == ["point", "name", "group", "is_contour"]
    contour = tol[tol["is_contour"]]
    assert np.median(np.abs(contour["spread_along"] / p.spread[0, group[contour["point"]], 0] - 1)) <= 0.15
    assert np.median(np.abs(contour["spread_across"] / p.spread[0, group[contour["point"]], 1] - 1)) <= 0.15


def test_local_frames_are_orthonormal_and_follow_the_contours(shapes, scheme):
    frames = local_frames(shapes[:10], scheme)  # (10, 68, 2, 2)
    np.testing.assert_allclose(np.einsum("nkci,nkcj->nkij", frames, frames), np.broadcast_to(np.eye(2), frames.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(frames), 1.0)  # across is along turned by +90° (x right, y down)
    along, contour = frames[..., 0], scheme.contour_mask
    np.testing.assert_allclose(along[:, contour], scheme.contour_tangents(shapes[:10])[:, contour])
    eyes = shapes[:10, 45] - shapes[:10, 36]  # the scheme's normaliser points, outer eye corners
    axis = eyes / np.linalg.norm(eyes, axis=-1, keepdims=True)
    np.testing.assert_allclose(along[:, ~contour], np.broadcast_to(axis[:, None], along[:, ~contour].shape))
    box = get_scheme("aflw_19")  # normalised by the face box: no face axis from two points
    plain = local_frames(np.random.default_rng(0).normal(size=(3, 19, 2)), box)
    np.testing.assert_array_equal(plain[:, ~box.contour_mask], np.broadcast_to(np.eye(2), (3, 17, 2, 2)))
    assert np.isfinite(local_frames(np.full((1, 68, 2), np.nan), scheme)).all()  # nothing to orient by: image axes


def test_bad_input_names_the_argument(planted, scheme):
    xy, subject, names, norm = planted.xy, planted.subject, planted.names, planted.normaliser
    with pytest.raises(ValueError, match="xy"):
        estimate_consensus(xy[:, :10], subject, names, scheme, norm)
    with pytest.raises(ValueError, match="subject"):
        estimate_consensus(xy, subject + 1000, names, scheme, norm)
    with pytest.raises(ValueError, match="annotator"):
        estimate_consensus(xy, subject, names[:-1], scheme, norm)
    with pytest.raises(ValueError, match="normaliser"):
        estimate_consensus(xy, subject, names, scheme, np.where(np.arange(len(norm)) == 3, 0.0, norm))
    with pytest.raises(ValueError, match="witnesses"):
        estimate_consensus(xy, subject, names, scheme, norm, witnesses={"model": xy})
