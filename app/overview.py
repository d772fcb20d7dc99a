"""The overview page: what the audit found, by issue type, point group, score, point and face."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.audit_view import AuditView, audit_version
from auditor import charts
from auditor.metrics import summary
from auditor.report import calibration_text, ced_max, face_nme, overview_tables, positions


def overview_stats(view: AuditView) -> dict:
    """The overview's aggregates, computed once per audit version."""
    return _cached_stats(view, str(view.path), audit_version(view.path))


@st.cache_data(max_entries=4, show_spinner="Summarising the audit…")
def _cached_stats(_view: AuditView, audit_dir: str, version: tuple[int, ...]) -> dict:
    p, images = _view.points, _view.images
    per_point = _view.scheme_points.copy()
    anisotropy = p.anisotropy if "anisotropy" in p else pd.Series(np.nan, index=p.index)
    per_point["anisotropy"] = anisotropy.groupby(p.point.to_numpy()).mean().reindex(per_point.point).to_numpy()
    human, searched, pred = (positions(p, name) for name in ("human", "searched", "pred"))
    nmes = {
        "human vs predicted": (images.nme_pred.to_numpy(dtype=np.float64) if "nme_pred" in images
                               else face_nme(p, images, human, pred).to_numpy()),
        "human vs searched": (images.nme_searched.to_numpy(dtype=np.float64) if "nme_searched" in images
                              else face_nme(p, images, human, searched).to_numpy()),
        "searched vs predicted": face_nme(p, images, searched, pred).to_numpy(),
    }
    return {**overview_tables(p, images, _view.manifest), "per_point": per_point, "nmes": nmes}


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
