"""Several annotators: is the consensus closer to the truth than the annotators, and are the annotators ranked,
their biases and each point's tolerance recovered?

    python benchmarks/annotators.py                 # 300 faces, 5 annotators, 3 per face, 10 seeds (about 2 minutes)
    python benchmarks/annotators.py --seeds 2       # a quicker look

The truth is the bundled synthetic set's true landmarks (sample_data/truth, the first FACES faces). For each seed,
`auditor.noise.draw_annotators` draws 5 annotators (its defaults: spread per point group 0.005-0.04 NME, twice that
along contours, biases along and across up to 0.03 NME centred over the annotators, gross-error rates 0-4 %) and
has each face labelled by 3 of them. `auditor.consensus.estimate_consensus` sees only the labels (and the labels' own
shape, which it makes from them): no model and no search take part here (in an audit they join as witnesses), so
this measures the annotators' side alone.
Reported, per seed and as medians:
- Spearman's rank correlation between the annotators' true mean error (labels vs truth, gross errors included)
  and the estimated one (`annotator_table`'s mean_error, labels vs consensus);
- bias recovery: |estimated - planted| / |planted| for every annotator's bias along and across each contour group
  whose planted |bias| >= 0.005 NME (smaller ones are within the noise of 60 labels per face and point);
- the mean error (NME, vs truth) of the consensus, of the plain mean and plain median of each face's labels, and of
  the best and the median annotator;
- per point, the tolerances' spread along and across (`point_tolerances`) against the planted one: the RMS
  per-axis deviation from the truth of the labels that are not gross errors (click spread and bias together);
- AUROC of 1 - annotator_agreement for the planted gross errors against every other label, and on the points off
  any contour alone (along a contour a careless annotator's clicks spread as far as a small gross error); beside
  it the same AUROC of an oracle that knows the truth and every planted parameter (`oracle_gross_score`): the
  best any method can do on this planting;
- the same consensus without the labels' shape as a witness (`ConsensusConfig(shape_rounds=0)`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from auditor.consensus import ConsensusConfig, annotator_table, estimate_consensus, point_tolerances
from auditor.evaluate import auroc
from auditor.io import read_dataset
from auditor.noise import AnnotatorConfig, annotator_frames, draw_annotators

TRUTH = Path(__file__).resolve().parents[1] / "sample_data" / "truth"
MIN_BIAS = 0.005  # NME: planted biases below this are not scored for recovery
ORACLE_DRAWS = 256  # gross-error displacements drawn to integrate the oracle's gross-error likelihood


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two (n,) arrays without ties."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def planted_frames(truth: np.ndarray, face: np.ndarray, scheme) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frames `draw_annotators` planted in, per label set of faces `face` (M,): along (M, K, 2) and across
    (M, K, 2) unit vectors at the truth (N, K, 2), and (M, K) whether along is a contour's tangent."""
    along, on_contour = annotator_frames(truth, scheme)
    along, on_contour = along[face], on_contour[face]
    return along, np.stack([-along[..., 1], along[..., 0]], -1), on_contour


def planted_tolerance(truth: np.ndarray, labels: np.ndarray, face: np.ndarray, gross: np.ndarray, scheme,
                      normaliser: np.ndarray) -> np.ndarray:
    """(K, 2) RMS deviation along / across of the labels (M, K, 2) from the truth (N, K, 2), gross errors (M, K)
    excluded, normaliser units (N,)."""
    along, across, _ = planted_frames(truth, face, scheme)
    d = (labels - truth[face]) / normaliser[face, None, None]
    comp = np.stack([(d * along).sum(-1), (d * across).sum(-1)], -1)
    comp = np.where(gross[..., None], np.nan, comp)
    return np.sqrt(np.nanmean(comp**2, axis=0))


def oracle_gross_score(truth: np.ndarray, labels: np.ndarray, face: np.ndarray, names: list[str],
                       planted: pd.DataFrame, scheme, config: AnnotatorConfig) -> np.ndarray:
    """(M, K) log odds that each label (M, K, 2) px is a planted gross error, knowing the truth (N, K, 2) px and the
    planted parameters: the label's offset from truth + bias under the annotator's click Gaussian (along / across),
    against the same convolved with `draw_annotators`' gross displacement (uniform size in gross_range, uniform
    direction; ORACLE_DRAWS draws), and the annotator's gross rate."""
    norm = scheme.normaliser(truth)[face][:, None, None]
    along, across, on_contour = planted_frames(truth, face, scheme)
    groups = scheme.group_names
    group_of = np.array([groups.index(g) for g in scheme.groups])
    table = planted.set_index("name").loc[names]
    spread = table[[f"spread_{g}" for g in groups]].to_numpy(dtype=np.float64)[:, group_of]  # (M, K)
    bias = np.stack([table[[f"bias_{side}_{g}" for g in groups]].to_numpy(dtype=np.float64)[:, group_of]
                     for side in ("along", "across")], -1)  # (M, K, 2)
    rate = table["gross_rate"].to_numpy(dtype=np.float64)[:, None]
    s_along, s_across = spread * np.where(on_contour, config.along_factor, 1.0), spread
    residual = (labels - truth[face]) / norm - (bias[..., :1] * along + bias[..., 1:] * across)  # NME, image axes

    def log_normal(r: np.ndarray) -> np.ndarray:
        a, c = (r * along).sum(-1), (r * across).sum(-1)
        return -0.5 * (np.square(a / s_along) + np.square(c / s_across)) - np.log(s_along * s_across)

    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, ORACLE_DRAWS)
    size = rng.uniform(*config.gross_range, ORACLE_DRAWS)
    shifts = size[:, None] * np.stack([np.cos(angle), np.sin(angle)], -1)
    log_gross = logsumexp(np.stack([log_normal(residual - d) for d in shifts]), axis=0) - np.log(ORACLE_DRAWS)
    with np.errstate(divide="ignore"):
        return log_gross + np.log(rate) - log_normal(residual) - np.log1p(-rate)


def one_seed(truth_ds, seed: int, faces: int) -> dict[str, float]:
    scheme = truth_ds.scheme
    truth = truth_ds.landmarks[:faces]
    ids = truth_ds.image_ids[:faces]
    labels, face, names, planted, noise = draw_annotators(truth, scheme, ids, np.random.default_rng(seed),
                                                          AnnotatorConfig())
    label_ids = [f"{n}/{ids[f]}" for n, f in zip(names, face, strict=True)]
    gross = np.zeros(labels.shape[:2], bool)
    row_of = {label_id: m for m, label_id in enumerate(label_ids)}
    for image_id, point in noise[["image_id", "point"]].itertuples(index=False):
        gross[row_of[image_id], point] = True
    true_norm = scheme.normaliser(truth)
    # the consensus sees the labels only: each face's normaliser is the mean of its label sets'
    label_norm = scheme.normaliser(labels)
    normaliser = np.bincount(face, weights=label_norm, minlength=faces) / np.bincount(face, minlength=faces)
    started = time.perf_counter()
    consensus = estimate_consensus(labels, face, names, scheme, normaliser)
    seconds = time.perf_counter() - started
    alone = estimate_consensus(labels, face, names, scheme, normaliser, config=ConsensusConfig(shape_rounds=0))
    oracle = oracle_gross_score(truth, labels, face, names, planted, scheme, AnnotatorConfig())
    table = annotator_table(consensus, labels, face, names, scheme, normaliser, bootstrap=0).set_index("annotator")

    error = np.linalg.norm(labels - truth[face], axis=-1) / true_norm[face, None]  # (M, K)
    names_arr = np.asarray(names)
    true_mean = pd.Series({n: float(np.nanmean(error[names_arr == n])) for n in planted["name"]})
    rho = spearman(true_mean.to_numpy(), table.loc[true_mean.index, "mean_error"].to_numpy())

    contour_groups = [g for g in scheme.group_names
                      if scheme.contour_mask[[i for i, x in enumerate(scheme.groups) if x == g]].any()]
    relative = []
    for a, name in enumerate(consensus.annotators):
        row = planted.set_index("name").loc[name]
        for g in contour_groups:
            gi = consensus.groups.index(g)
            for c, side in enumerate(("along", "across")):
                value = row[f"bias_{side}_{g}"]
                if abs(value) >= MIN_BIAS:
                    relative.append(abs(consensus.bias[a, gi, c] - value) / abs(value))
    relative = np.asarray(relative)

    def mean_error(xy: np.ndarray) -> float:
        return float(np.nanmean(np.linalg.norm(xy - truth, axis=-1) / true_norm[:, None]))

    stacked = np.full((faces, 3, *truth.shape[1:]), np.nan)
    slot = np.zeros(faces, int)
    for m, f in enumerate(face):
        stacked[f, slot[f]] = labels[m]
        slot[f] += 1
    per_annotator = true_mean.sort_values()

    tolerances = point_tolerances(labels, face, consensus, scheme, np.sqrt(normaliser), normaliser=normaliser)
    planted_tol = planted_tolerance(truth, labels, face, gross, scheme, true_norm)
    est = tolerances[["spread_along", "spread_across"]].to_numpy()
    tol_error = np.abs(est - planted_tol) / planted_tol

    judged = np.isfinite(consensus.agreement)
    crisp = judged & ~scheme.contour_mask[None, :]
    return {
        "spearman": rho,
        "bias_within_20": float((relative <= 0.2).mean()), "bias_median_rel": float(np.median(relative)),
        "consensus": mean_error(consensus.xy), "plain_mean": mean_error(np.nanmean(stacked, axis=1)),
        "plain_median": mean_error(np.nanmedian(stacked, axis=1)), "best": float(per_annotator.iloc[0]),
        "median_annotator": float(per_annotator.median()),
        "sigma_median_rel": float(np.median(tol_error)),
        "gross_auroc": auroc(1 - consensus.agreement[judged], gross[judged]),
        "gross_auroc_crisp": auroc(1 - consensus.agreement[crisp], gross[crisp]),
        "gross_auroc_oracle": auroc(oracle[judged], gross[judged]),
        "consensus_no_shape": mean_error(alone.xy),
        "gross_auroc_no_shape": auroc(1 - alone.agreement[judged], gross[judged]),
        "gross": int(gross.sum()), "seconds": seconds, "iterations": consensus.iterations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--faces", type=int, default=300)
    args = parser.parse_args()
    truth = read_dataset(TRUTH)
    rows = []
    for seed in range(args.seeds):
        rows.append(one_seed(truth, seed, args.faces))
        r = rows[-1]
        print(f"seed {seed}: spearman {r['spearman']:.2f}, biases within 20 % {r['bias_within_20']:.0%}, consensus "
              f"{r['consensus']:.4f} (mean {r['plain_mean']:.4f}, median {r['plain_median']:.4f}, best "
              f"{r['best']:.4f}, median annotator {r['median_annotator']:.4f}), sigma error "
              f"{r['sigma_median_rel']:.1%}, gross AUROC {r['gross_auroc']:.4f} (oracle {r['gross_auroc_oracle']:.4f}, "
              f"without the shape witness {r['gross_auroc_no_shape']:.4f}), {r['seconds']:.1f} s", flush=True)
    table = pd.DataFrame(rows)
    summary = table.median()
    print(f"\n{args.faces} faces, 5 annotators, 3 per face, {args.seeds} seeds: medians over seeds")
    print("| measure | median | worst seed | target |")
    print("|---|---|---|---|")
    print(f"| Spearman, annotators' estimated vs true mean error | {summary.spearman:.3f} | "
          f"{table.spearman.min():.3f} | >= 0.9 |")
    print(f"| contour biases (>= {MIN_BIAS} NME) within 20 % of planted | {summary.bias_within_20:.0%} | "
          f"{table.bias_within_20.min():.0%} | all |")
    print(f"| median relative bias error | {summary.bias_median_rel:.1%} | {table.bias_median_rel.max():.1%} | "
          "<= 20 % |")
    ratio_median = table.consensus / table.median_annotator
    ratio_best = table.consensus / table.best
    print(f"| consensus error / median annotator's | {ratio_median.median():.3f} | {ratio_median.max():.3f} | "
          "<= 0.8 |")
    print(f"| consensus error / best annotator's | {ratio_best.median():.3f} | {ratio_best.max():.3f} | <= 1.0 |")
    print(f"| consensus / plain mean / plain median error (NME) | {summary.consensus:.4f} / "
          f"{summary.plain_mean:.4f} / {summary.plain_median:.4f} | | consensus lowest |")
    print(f"| per-point spread vs planted (median relative error) | {summary.sigma_median_rel:.1%} | "
          f"{table.sigma_median_rel.max():.1%} | <= 15 % |")
    print(f"| gross error by one annotator of three, AUROC | {summary.gross_auroc:.4f} | "
          f"{table.gross_auroc.min():.4f} | >= 0.99 |")
    print(f"| the same on points off any contour (crisp) | {summary.gross_auroc_crisp:.4f} | "
          f"{table.gross_auroc_crisp.min():.4f} | |")
    print(f"| the same by an oracle that knows the truth and the planted parameters | "
          f"{summary.gross_auroc_oracle:.4f} | {table.gross_auroc_oracle.min():.4f} | |")
    print(f"| without the labels' shape as a witness: gross AUROC / consensus error (NME) | "
          f"{summary.gross_auroc_no_shape:.4f} / {summary.consensus_no_shape:.4f} | "
          f"{table.gross_auroc_no_shape.min():.4f} / {table.consensus_no_shape.max():.4f} | |")
    print(f"| EM time per seed (s) | {summary.seconds:.1f} | {table.seconds.max():.1f} | |")
    print(" ".join(f"{k}={v:.4f}" for k, v in [
        ("spearman", summary.spearman), ("bias_within_20", summary.bias_within_20),
        ("consensus_over_median", ratio_median.median()), ("consensus_over_best", ratio_best.median()),
        ("sigma_rel_error", summary.sigma_median_rel), ("gross_auroc", summary.gross_auroc),
        ("gross_auroc_oracle", summary.gross_auroc_oracle)]))


if __name__ == "__main__":
    main()
