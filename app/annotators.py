"""The annotators page: each annotator's quality against the consensus (AUDIT/annotators.parquet), a ranking with
bootstrap intervals, and the faces where a chosen annotator departs most from the consensus, each opening the review
page on its worst point. An audit of a dataset that names no annotators has no annotators.parquet: the page says how
to name them."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from app.audit_view import AuditView, audit_version
from app.review import CURRENT
from app.text import md_text
from auditor import charts
from auditor.annotators import departures
from auditor.audit_dir import load_annotators
from auditor.errors import InputError

DEPARTURE_COLUMNS = ["image_id", "subject", "mean_error", "worst_point", "worst_point_name", "worst_error",
                     "annotator_agreement"]
NEEDED = {"points": ("x_consensus", "y_consensus"), "images": ("annotator", "subject")}  # beside annotators.parquet
DEPARTURES, CHOICE = "departures", "annotator_choice"
TOP = 20  # departures listed per annotator
NO_ANNOTATORS = (
    "This dataset names no annotators, so there is nothing to compare. To compare annotators, say who labelled each "
    "face and re-run `auditor audit`: a CSV `annotator` column, a COCO annotation's `annotator` field (or "
    "`attributes.annotator`, as CVAT exports it), or a pts tree `DATA/<annotator>/<image>.pts` read with "
    "`--annotators-from folder`. Faces of the same person in the same image are then grouped, and each point's "
    "consensus, each annotator's bias, spread and gross-error rate are estimated.")
HELP = ("Against the consensus of all annotators; errors, biases and spreads in normaliser units (NME). Mean error: "
        "the mean distance of the annotator's labels to the consensus, gross errors included, with its 95 % interval "
        "(bootstrap over faces). Gross rate: the share of their labels that are gross errors. Spread: the s.d. of a "
        "click per axis. Label issues per 100: labels more likely a gross error than not, per 100 labelled points. "
        "Per point group, along / across: along the contour and across it (elsewhere along the line through the "
        "normaliser's two points and across it); bias is the mean offset.")


def annotator_summary(view: AuditView) -> pd.DataFrame | None:
    """AUDIT/annotators.parquet (`auditor.audit_dir.load_annotators`), once per audit version; None when the audit
    has none; an InputError for a bad file."""
    return _cached_summary(str(view.path), audit_version(view.path))


@st.cache_data(max_entries=4, show_spinner=False)
def _cached_summary(audit_dir: str, version: tuple[int, ...]) -> pd.DataFrame | None:
    return load_annotators(audit_dir)


def group_table(row: pd.Series) -> pd.DataFrame:
    """One annotator's row of annotators.parquet as one row per point group (the groups of its `bias_along_<group>`
    columns, in order): group, then each per-group measure `<measure>_<group>` of the row (bias_along, bias_across,
    spreads) as a column `<measure>`."""
    groups = [str(c).removeprefix("bias_along_") for c in row.index if str(c).startswith("bias_along_")]
    measures: dict[str, dict[str, float]] = {}
    for column in map(str, row.index):
        group = max((g for g in groups if column.endswith(f"_{g}")), key=len, default=None)  # "eye" vs "left_eye"
        if group is not None:
            measures.setdefault(column.removesuffix(f"_{group}"), {})[group] = row[column]
    return pd.DataFrame({"group": groups, **{name: [values.get(g, np.nan) for g in groups]
                                              for name, values in measures.items()}})


def worst_points(view: AuditView, image_ids: list[str]) -> pd.DataFrame:
    """One row per face of `image_ids`: its label farthest from the consensus (worst_point, worst_point_name,
    worst_error in units of the face's normaliser; -1, '' and NaN for a face without any) and the face's
    annotator_agreement (NaN where images.parquet holds none)."""
    rows = []
    for image_id in image_ids:
        face = view.points.iloc[view.face_points[image_id]]
        row = view.images.iloc[view.image_row[image_id]]
        error = np.hypot(face.x_human.to_numpy(dtype=np.float64) - face.x_consensus.to_numpy(dtype=np.float64),
                         face.y_human.to_numpy(dtype=np.float64) - face.y_consensus.to_numpy(dtype=np.float64))
        worst = int(np.nanargmax(error)) if np.isfinite(error).any() else None
        rows.append({"worst_point": -1 if worst is None else int(face.point.iat[worst]),
                     "worst_point_name": "" if worst is None else str(face.point_name.iat[worst]),
                     "worst_error": np.nan if worst is None else error[worst] / float(row.normaliser),
                     "annotator_agreement": float(row.get("annotator_agreement", np.nan))})
    return pd.DataFrame(rows, columns=["worst_point", "worst_point_name", "worst_error", "annotator_agreement"])


def load_departures(view: AuditView) -> pd.DataFrame:
    """The TOP faces of each annotator farthest from the consensus (`auditor.annotators.departures`) with their
    worst points (DEPARTURE_COLUMNS and annotator), once per audit version."""
    return _cached_departures(view, str(view.path), audit_version(view.path))


@st.cache_data(max_entries=4, show_spinner=False)
def _cached_departures(_view: AuditView, audit_dir: str, version: tuple[int, ...]) -> pd.DataFrame:
    faces = departures(_view.points, _view.images, top=TOP)
    return pd.concat([faces, worst_points(_view, faces.image_id.tolist())], axis=1)


def _open_face(table: pd.DataFrame) -> None:
    """Open the selected departure's face on the review page, at its worst point (a deep link)."""
    rows = st.session_state[DEPARTURES]["selection"]["rows"]
    if not rows:
        return
    row = table.iloc[rows[0]]
    st.session_state.pop(CURRENT, None)  # the review page then opens the item the URL names
    st.query_params["image"] = str(row.image_id)
    st.query_params["point"] = str(int(row.worst_point))
    st.session_state["page"] = "Review"  # the sidebar's page (app/main.py)


def summary_ui(table: pd.DataFrame) -> None:
    """The ranking chart and the table of every annotator."""
    st.subheader("Ranking")
    st.plotly_chart(charts.annotator_ranking_figure(table), key="annotator_ranking")
    number = st.column_config.NumberColumn
    config = {"mean_error": number("mean error", format="%.4f"), "mean_error_lo": number("95 % from", format="%.4f"),
              "mean_error_hi": number("95 % to", format="%.4f"), "gross_rate": number("gross rate", format="percent"),
              "spread": number(format="%.4f"), "label_issues_per_100": number("label issues / 100", format="%.2f")}
    config |= {str(c): number(format="%+.4f" if str(c).startswith("bias_") else "%.4f") for c in table.columns
               if str(c).startswith(("bias_", "spread_"))}
    st.dataframe(table, hide_index=True, column_config=config, key="annotator_table")
    st.caption(HELP)


def annotator_ui(view: AuditView, table: pd.DataFrame) -> None:
    """For one annotator chosen: their bias and spread per point group, and the faces where they depart most."""
    st.subheader("One annotator")
    annotator = st.selectbox("Annotator", table.annotator.astype(str).tolist(), key=CHOICE)
    row = table[table.annotator.astype(str) == annotator].iloc[0]
    left, right = st.columns([1, 2])
    with left:
        groups = group_table(row)
        st.dataframe(groups, hide_index=True, key="annotator_groups", column_config={
            c: st.column_config.NumberColumn(format="%+.4f" if c.startswith("bias") else "%.4f")
            for c in groups.columns[1:]})
        st.caption("Per point group, normaliser units.")
    with right:
        missing = [f"{c} ({name}.parquet)" for name, columns in NEEDED.items() for c in columns
                   if c not in getattr(view, name)]
        if missing:
            st.warning(f"Cannot list the faces: the audit lacks {md_text(', '.join(missing))}.")
            return
        faces = load_departures(view)
        faces = faces[faces.annotator == annotator].reindex(columns=DEPARTURE_COLUMNS).reset_index(drop=True)
        st.dataframe(faces, key=DEPARTURES, on_select=partial(_open_face, faces), selection_mode="single-row",
                     hide_index=True, column_config={
                         "mean_error": st.column_config.NumberColumn("mean error", format="%.4f"),
                         "worst_error": st.column_config.NumberColumn("worst error", format="%.4f"),
                         "annotator_agreement": st.column_config.NumberColumn("agreement", format="%.3f")})
        st.caption(f"The {len(faces)} faces of {md_text(annotator)} farthest from the consensus (mean distance of "
                   "their labels, NME). Select a row to review its worst point.")


def annotators_ui(view: AuditView) -> None:
    """Draw the annotators page."""
    st.header("Annotators")
    try:
        table = annotator_summary(view)
    except InputError as e:
        st.error("Cannot read this audit's annotator table:")
        st.code(str(e), language=None)
        return
    if table is None:
        st.info(NO_ANNOTATORS)
        return
    summary_ui(table)
    annotator_ui(view, table)
