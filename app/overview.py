"""The overview page: what the audit found, by issue type, point group, score, point and face."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import charts
from app.audit_view import NO_ISSUE, AuditView, audit_version
from auditor.metrics import summary

SCORE_FLOOR = 1e-12  # scores below it share the lowest bin of the log histogram
SCORE_BINS = 60


def face_nme(view: AuditView, a: str, b: str) -> pd.Series:
    """Per-face NME between two point sets of points.parquet (`a`, `b`: 'human', 'searched', 'pred'), by image_id."""
    p = view.points
    distance = np.hypot(p[f"x_{a}"].to_numpy(dtype=np.float64) - p[f"x_{b}"].to_numpy(dtype=np.float64),
                        p[f"y_{a}"].to_numpy(dtype=np.float64) - p[f"y_{b}"].to_numpy(dtype=np.float64))
    # the normaliser is constant within a face, so the face's mean distance over it is the mean of the point NMEs
    mean_px = pd.Series(distance).groupby(p.image_id.to_numpy(dtype=object)).mean()
    return mean_px / view.images.set_index("image_id").normaliser.reindex(mean_px.index).to_numpy()


def overview_stats(view: AuditView) -> dict:
    """The overview's aggregates, computed once per audit version."""
    return _cached_stats(view, str(view.path), audit_version(view.path))


@st.cache_data(max_entries=4, show_spinner="Summarising the audit…")
def _cached_stats(_view: AuditView, audit_dir: str, version: tuple[int, ...]) -> dict:
    p, images = _view.points, _view.images
    flagged = p.is_label_issue.fillna(False).to_numpy(dtype=bool)
    issue_type = p.issue_type.fillna("").astype(str).replace("", NO_ISSUE)
    by_type = pd.DataFrame({"issue_type": issue_type, "flagged": flagged}).value_counts().rename("count").reset_index()
    by_type = by_type.assign(none=by_type.issue_type == NO_ISSUE).sort_values(["none", "issue_type"]).drop(
        columns="none")
    by_group = (pd.DataFrame({"group": p.group[flagged].astype(str), "issue_type": issue_type[flagged]})
                .value_counts().rename("count").reset_index().sort_values(["group", "issue_type"]))
    score = p.label_score.to_numpy(dtype=np.float64, na_value=np.nan)
    log_score = np.log10(np.clip(score[np.isfinite(score)], SCORE_FLOOR, 1.0))
    finite_flagged = flagged[np.isfinite(score)]
    edges = np.linspace(min(np.floor(log_score.min()), -1.0) if len(log_score) else -1.0, 0.0, SCORE_BINS + 1)
    histogram = {charts.FLAGGED: np.histogram(log_score[finite_flagged], edges)[0],
                 charts.NOT_FLAGGED: np.histogram(log_score[~finite_flagged], edges)[0]}
    per_point = _view.scheme_points.copy()
    anisotropy = p.anisotropy if "anisotropy" in p else pd.Series(np.nan, index=p.index)
    per_point["anisotropy"] = anisotropy.groupby(p.point.to_numpy()).mean().reindex(per_point.point).to_numpy()
    nmes = {
        "human vs predicted": (images.nme_pred.to_numpy(dtype=np.float64) if "nme_pred" in images
                               else face_nme(_view, "human", "pred").to_numpy()),
        "human vs searched": (images.nme_searched.to_numpy(dtype=np.float64) if "nme_searched" in images
                              else face_nme(_view, "human", "searched").to_numpy()),
        "searched vs predicted": face_nme(_view, "searched", "pred").to_numpy(),
    }
    return {
        "faces": len(images), "points": len(p), "issues": int(flagged.sum()),
        "faces_with_issues": int(p.image_id[flagged].nunique()), "by_type": by_type, "by_group": by_group,
        "score_edges": edges, "score_counts": histogram, "per_point": per_point, "nmes": nmes,
        "threshold": (_view.manifest.get("scoring") or {}).get("issue_threshold"),
    }


def ced_max(nmes: dict[str, np.ndarray]) -> float:
    """The CED's x range: 0.10 (the usual failure threshold), or more when many faces lie beyond it."""
    values = np.concatenate([v[np.isfinite(v)] for v in nmes.values()] or [np.zeros(1)])
    q = float(np.quantile(values, 0.95)) if len(values) else 0.0
    return max(0.10, float(np.ceil(q * 20) / 20))


def calibration_text(manifest: dict) -> str:
    """One line on the issue threshold: what the calibration expects of it (`auditor.calibration`), or why there
    is none."""
    threshold = (manifest.get("scoring") or {}).get("issue_threshold")
    block = manifest.get("calibration")
    if not isinstance(block, dict):
        return f"Issue threshold {threshold:g} (the audit predates calibration)."
    if not block.get("calibrated"):
        return f"Issue threshold {threshold:g}, not calibrated: {block.get('reason', 'no reason recorded')}."
    return (f"Issue threshold {block['threshold']:.3g}, calibrated to a precision of {block['target_precision']:.0%} "
            f"on {block['planted']:,} errors planted into a copy of these labels: expected precision "
            f"{block['expected_precision']:.0%}, recall {block['expected_recall']:.0%} of plain mistakes like "
            "those (swapped faces apart).")


def overview_ui(view: AuditView) -> None:
    """Draw the overview page."""
    stats = overview_stats(view)
    st.header("Overview")
    columns = st.columns(4)
    columns[0].metric("Faces", f"{stats['faces']:,}")
    columns[1].metric("Points", f"{stats['points']:,}")
    columns[2].metric("Label issues", f"{stats['issues']:,}")
    columns[3].metric("Faces with issues", f"{stats['faces_with_issues']:,}")
    st.caption(calibration_text(view.manifest))

    left, right = st.columns(2)
    with left:
        st.subheader("Points by issue type")
        st.plotly_chart(charts.issue_type_figure(stats["by_type"]), key="by_type")
    with right:
        st.subheader("Label issues by point group")
        st.plotly_chart(charts.group_figure(stats["by_group"]), key="by_group")

    left, right = st.columns(2)
    with left:
        st.subheader("Label score")
        st.plotly_chart(charts.score_histogram_figure(stats["score_edges"], stats["score_counts"],
                                                      stats["threshold"]), key="scores")
    with right:
        st.subheader("Ambiguity per point")
        st.plotly_chart(charts.ambiguity_figure(stats["per_point"]), key="ambiguity")
        st.caption("Mean anisotropy of the heatmap at each label: contour points, where annotators slide, "
                   "are stretched along the contour (a flat hat); crisp points are round.")

    st.subheader("Cumulative error distribution")
    max_threshold = ced_max(stats["nmes"])
    st.plotly_chart(charts.ced_figure(stats["nmes"], max_threshold), key="ced")
    table = pd.DataFrame({name: summary(values) for name, values in stats["nmes"].items()}).T
    st.dataframe(table, column_config={c: st.column_config.NumberColumn(format="%.4f") for c in table.columns})
    st.caption("Per-face NME between the human labels, the semantic search's positions and the model's "
               "predictions; fr = failure rate, auc = area under the CED up to the threshold.")
