"""The review page: a queue of points, most suspicious first, and a panel where the curator decides on one.

The current item `(image_id, point)` lives in `st.session_state` and in the URL (`?image=...&point=...`, a deep
link). The queue's row selection sets it; Accept, Reject and Edit write through `ReviewStore.record` at once and
move it to the next undecided item of the queue. The panel is a fragment: a click redraws the panel alone, and the
queue's decision column catches up on the next full rerun (a filter change, a row selected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from app import figures
from app.audit_view import NO_ISSUE, AuditView, audit_version, crop_data_uri, image_data_uri
from app.text import md_text
from auditor.audit_dir import proposals
from auditor.errors import InputError
from auditor.geometry import apply_affine
from auditor.review import ReviewStore

CURRENT, QUEUE, SHOWN, ERROR, AUDIT = "current", "queue", "queue_shown", "review_error", "review_audit"
FACE_COLUMNS = ["point", "point_name", "x_human", "y_human", "x_searched", "y_searched", "x_pred", "y_pred"]
QUEUE_COLUMNS = ["image_id", "point", "point_name", "group", "issue_type", "label_score", "searched_nme"]
STAT_COLUMNS = (("anisotropy", "Anisotropy", "{:.2f}"), ("angle", "Principal angle", "{:.0f}°"),
                ("gaussianity_human", "Gaussian-likeness at label", "{:.2f}"),
                ("gaussianity_searched", "… at searched", "{:.2f}"), ("flat_hat", "Flat-hat index", "{:.1f}"),
                ("peak", "Peak", "{:.2f}"))


def filters_ui(view: AuditView) -> dict:
    """Draw the queue's filters; returns them: issues_only, issue_types, groups, point_names, image_query."""
    p = view.points
    types = sorted({str(t) for t in p.issue_type.dropna().unique() if t} | {NO_ISSUE})
    groups = list(dict.fromkeys(view.scheme_points.group.astype(str)))
    names = view.scheme_points.point_name.astype(str).tolist()
    with st.expander("Filters", expanded=True):
        top = st.columns([1, 2, 2])
        issues_only = top[0].checkbox("Label issues only", value=True, key="f_issues_only")
        issue_types = top[1].multiselect("Issue type", types, key="f_types", placeholder="any")
        group = top[2].multiselect("Group", groups, key="f_groups", placeholder="any")
        bottom = st.columns([3, 2])
        point_names = bottom[0].multiselect("Point", names, key="f_points", placeholder="any")
        image_query = bottom[1].text_input("Image id contains", key="f_image").strip()
    return {"issues_only": issues_only, "issue_types": tuple(issue_types), "groups": tuple(group),
            "point_names": tuple(point_names), "image_query": image_query}


@dataclass(frozen=True)
class Queue:
    """The points to review, lowest label_score first: a read-only table and its keys."""

    filters: tuple  # what it was built from: sorted (name, value) pairs of `filters_ui`
    table: pd.DataFrame  # QUEUE_COLUMNS, one row per point, in queue order
    image_ids: np.ndarray  # (Q,) object
    points: np.ndarray  # (Q,) int64
    index: pd.MultiIndex  # (image_id, point) -> position in the queue

    def __len__(self) -> int:
        return len(self.image_ids)

    def item(self, position: int) -> tuple[str, int]:
        """The (image_id, point) at a position of the queue."""
        return str(self.image_ids[position]), int(self.points[position])

    def position(self, item: tuple[str, int] | None) -> int | None:
        """Where `item` is in the queue, or None."""
        if item is None or item not in self.index:
            return None
        return int(self.index.get_loc(item))


def build_queue(view: AuditView, filters: tuple) -> Queue:
    """The labelled points of the audit passing `filters` (sorted items of `filters_ui`'s dict), label_score
    ascending."""
    p, f = view.points, dict(filters)
    keep = np.isfinite(p.x_human.to_numpy(dtype=np.float64)) & np.isfinite(p.y_human.to_numpy(dtype=np.float64))
    if f["issues_only"]:
        keep &= p.is_label_issue.fillna(False).to_numpy(dtype=bool)
    if f["issue_types"]:
        types = p.issue_type.fillna("").astype(str).replace("", NO_ISSUE)
        keep &= types.isin(f["issue_types"]).to_numpy()
    if f["groups"]:
        keep &= p.group.astype(str).isin(f["groups"]).to_numpy()
    if f["point_names"]:
        keep &= p.point_name.astype(str).isin(f["point_names"]).to_numpy()
    if f["image_query"]:
        keep &= p.image_id.astype(str).str.contains(f["image_query"], regex=False).to_numpy(dtype=bool)
    rows = view.by_score[keep[view.by_score]]
    table = p[QUEUE_COLUMNS].iloc[rows].reset_index(drop=True)
    image_ids, points = table.image_id.astype(str).to_numpy(dtype=object), table.point.to_numpy(dtype=np.int64)
    return Queue(filters, table, image_ids, points, pd.MultiIndex.from_arrays([image_ids, points]))


def load_queue(view: AuditView, filters: dict) -> Queue:
    """`build_queue`, once per audit version and filters (cache_resource: shared, read-only, never copied)."""
    return _cached_queue(view, str(view.path), audit_version(view.path), tuple(sorted(filters.items())))


@st.cache_resource(max_entries=16, show_spinner=False)
def _cached_queue(_view: AuditView, audit_dir: str, version: tuple[int, ...], filters: tuple) -> Queue:
    return build_queue(_view, filters)


def set_current(image_id: str, point: int) -> None:
    """Make (image_id, point) the current item, in the session and in the URL."""
    st.session_state[CURRENT] = (str(image_id), int(point))
    st.query_params["image"] = str(image_id)
    st.query_params["point"] = str(int(point))


def _deep_link(view: AuditView) -> tuple[str, int] | None:
    """The item the URL names (`?image=...&point=...`), when the audit has it."""
    image_id, point = st.query_params.get("image"), st.query_params.get("point")
    try:
        point = int(point)
    except (TypeError, ValueError):
        return None
    return (image_id, point) if image_id is not None and view.point_row(image_id, point) is not None else None


def _next_undecided(queue: Queue, item: tuple[str, int] | None, decisions: pd.DataFrame) -> tuple[str, int] | None:
    """The first item of the queue after `item` (from the start when it is not in the queue) with no decision."""
    decided = set(zip(decisions.image_id.astype(str), decisions.point.astype(int), strict=True))
    start = queue.position(item)
    for position in range(0 if start is None else start + 1, len(queue)):
        if queue.item(position) not in decided:
            return queue.item(position)
    return None


def _on_select(queue: Queue) -> None:
    rows = st.session_state[QUEUE]["selection"]["rows"]
    if rows:
        set_current(*queue.item(rows[0]))


def _decide(view: AuditView, queue: Queue, item: tuple[str, int], decision: str, xy: tuple[float, float] | None,
            reviewer: str) -> None:
    """Record a decision on `item`, then move to the next undecided item of the queue."""
    if decision == "edit":
        xy = (st.session_state.edit_x, st.session_state.edit_y)
    x, y = (None, None) if xy is None or not all(math.isfinite(v) for v in xy) else xy
    try:
        store = ReviewStore(view.path)
        store.record(item[0], item[1], decision, x=x, y=y, reviewer=reviewer or None)
        following = _next_undecided(queue, item, store.latest())
    except (InputError, ValueError) as e:
        st.session_state[ERROR] = str(e)
        return
    st.session_state.pop(ERROR, None)
    if following is not None:
        set_current(*following)


def _step(queue: Queue, item: tuple[str, int], step: int) -> None:
    position = queue.position(item)
    target = 0 if position is None else position + step
    if 0 <= target < len(queue):
        set_current(*queue.item(target))


def queue_ui(view: AuditView, queue: Queue) -> None:
    """Draw the queue, the latest decision of each point beside it; the current item is its selected row."""
    try:
        decisions = ReviewStore(view.path).latest()
    except InputError:  # the panel says why
        decisions = pd.DataFrame({"image_id": [], "point": [], "decision": []})
    decided = pd.MultiIndex.from_arrays([decisions.image_id.astype(str).to_numpy(dtype=object),
                                         decisions.point.to_numpy(dtype=np.int64)])
    where = queue.index.get_indexer(decided)
    decision = np.full(len(queue), "", dtype=object)
    decision[where[where >= 0]] = decisions.decision.to_numpy(dtype=object)[where >= 0]
    # a deep link opens its item, a new queue (filters changed) its first undecided item
    first = _deep_link(view) if CURRENT not in st.session_state else None
    moved = CURRENT not in st.session_state or (st.session_state.get(SHOWN) != queue.filters
                                                and queue.position(st.session_state[CURRENT]) is None)
    if first is None and moved and len(queue):
        first = _next_undecided(queue, None, decisions) or queue.item(0)
    if first is not None:
        set_current(*first)
    st.session_state[SHOWN] = queue.filters
    # the table's selection follows the current item, which a decision may have moved since the last full run
    position = queue.position(st.session_state.get(CURRENT))
    st.session_state[QUEUE] = {"selection": {"rows": [] if position is None else [position], "columns": [],
                                             "cells": []}}
    st.caption(f"{len(queue):,} points in the queue, lowest label_score first. Select a row to review it.")
    st.dataframe(queue.table.assign(decision=decision), key=QUEUE, on_select=partial(_on_select, queue),
                 selection_mode="single-row", hide_index=True, height=280, lazy=False, column_config={
                     "label_score": st.column_config.NumberColumn(format="%.2e"),
                     "searched_nme": st.column_config.NumberColumn("searched NME", format="%.3f")})


def _float(row: pd.Series, column: str) -> float:
    value = row.get(column, math.nan)
    return math.nan if value is None or pd.isna(value) else float(value)


def _xy(row: pd.Series, prefix: str) -> np.ndarray:
    return np.array([_float(row, f"x_{prefix}"), _float(row, f"y_{prefix}")])


def face_ui(view: AuditView, item: tuple[str, int], row: pd.Series) -> None:
    """The face with its points, and a zoom around the current point."""
    face = view.points[FACE_COLUMNS].iloc[view.face_points[item[0]]]
    path = view.image_file(item[0])
    try:
        uri, size = image_data_uri(str(path)) if path is not None else (None, None)
    except OSError:  # PIL's UnidentifiedImageError included: a file that is not an image
        path, uri, size = None, None, None
    if size is None:
        st.warning("Image not found or unreadable; the points are drawn alone.")
        xy = face[["x_human", "y_human", "x_searched", "y_searched", "x_pred", "y_pred"]].to_numpy(dtype=np.float64)
        lo, hi = np.nanmin(xy.reshape(-1, 2), axis=0), np.nanmax(xy.reshape(-1, 2), axis=0)
        size = (int(hi[0] - lo[0]) + 20, int(hi[1] - lo[1]) + 20)
        box_all = (lo[0] - 10, lo[1] - 10, hi[0] + 10, hi[1] + 10)
    else:
        box_all = (-0.5, -0.5, size[0] - 0.5, size[1] - 0.5)
    st.plotly_chart(figures.face_figure(face, item[1], image_uri=uri, view=box_all), key="face")
    centre = _xy(row, "human")
    if not np.isfinite(centre).all():
        return
    normaliser = float(view.images.normaliser.iat[view.image_row[item[0]]])
    half = max(10.0, 0.25 * normaliser) if math.isfinite(normaliser) else 20.0
    if path is not None:
        box = figures.zoom_box(tuple(centre), half, size)
        crop, origin = crop_data_uri(str(path), box), box[:2]
        zoom = (box[0] - 0.5, box[1] - 0.5, box[2] - 0.5, box[3] - 0.5)
    else:
        crop, origin = None, (0, 0)
        zoom = (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
    st.caption("Zoom around the point")
    st.plotly_chart(figures.face_figure(face, item[1], image_uri=crop, image_origin=origin, view=zoom, height=300),
                    key="zoom")


def heatmap_ui(view: AuditView, item: tuple[str, int], row: pd.Series) -> None:
    """The point's heatmap window, flat and as a surface beside the ideal Gaussian, and its shape measures."""
    stats = st.columns(3)
    for i, (column, label, fmt) in enumerate(STAT_COLUMNS):
        value = _float(row, column)
        value = math.degrees(value) if column == "angle" else value
        stats[i % 3].metric(label, fmt.format(value) if math.isfinite(value) else "–")
    if view.heatmaps is None:
        st.info("No heatmap store in this audit.")
        st.code(view.heatmaps_error or "", language=None)
        return
    n, k = view.image_row[item[0]], item[1]
    window = np.asarray(view.heatmaps.windows[n, k], dtype=np.float32)  # (W, W), read from the memory map
    origin = view.heatmaps.origins[n, k]
    to_heatmap = view.heatmaps.to_heatmap[n]
    marks = {prefix: apply_affine(to_heatmap, _xy(row, prefix)[None])[0]
             for prefix, _, _ in (*figures.POINT_SETS, figures.BROAD_SEARCH)}
    st.plotly_chart(figures.heatmap_figure(window, origin, marks, anisotropy=_float(row, "anisotropy"),
                                           angle=_float(row, "angle")), key="heatmap")
    peak = float(window.max()) if window.size and window.max() > 0 else 1.0
    ideal = figures.ideal_window(window.shape[-1], tuple(marks["human"] - origin), view.sigma, peak)
    st.plotly_chart(figures.surface_figure(window, ideal, origin, sigma=view.sigma), key="surface")
    st.caption(f"Heatmap pixels; {window.shape[-1]}×{window.shape[-1]} window around the label. The ideal Gaussian "
               "is centred on the label at the window's peak height.")


def decision_ui(view: AuditView, queue: Queue, item: tuple[str, int], row: pd.Series,
                reviewer: str) -> None:
    """Accept / Reject / Edit, each recorded at once, and moving through the queue."""
    xs, ys, source = proposals(row.to_frame().T)
    proposal = np.array([xs[0], ys[0]])
    if not np.isfinite(proposal).all():
        proposal = _xy(row, "human")
    buttons = st.columns(4)
    buttons[0].button("Accept", type="primary", shortcut="A", on_click=_decide, key="accept",
                      args=(view, queue, item, "accept", tuple(proposal), reviewer), width="stretch",
                      help=f"Take the proposed position (the {source[0]} one)")
    buttons[1].button("Reject", shortcut="X", on_click=_decide, key="reject",
                      args=(view, queue, item, "reject", None, reviewer), width="stretch",
                      help="Keep the human label")
    buttons[2].button("Previous", shortcut="P", on_click=_step, args=(queue, item, -1), key="previous",
                      width="stretch")
    buttons[3].button("Next", shortcut="N", on_click=_step, args=(queue, item, 1), key="next", width="stretch")
    if st.session_state.get("edit_for") != item:
        st.session_state.edit_x, st.session_state.edit_y = (round(float(v), 2) for v in proposal)
        st.session_state.edit_for = item
    with st.form("edit", border=False):
        columns = st.columns([2, 2, 1], vertical_alignment="bottom")
        columns[0].number_input("x (image px)", key="edit_x", step=0.5, format="%.2f")
        columns[1].number_input("y (image px)", key="edit_y", step=0.5, format="%.2f")
        columns[2].form_submit_button("Edit", on_click=_decide, args=(view, queue, item, "edit", None, reviewer),
                                      width="stretch", help="Record this position")


@st.fragment
def panel_ui(view: AuditView, queue: Queue, reviewer: str) -> None:
    """The review panel of the current item: progress, the face, the heatmap and the decision buttons."""
    if ERROR in st.session_state:
        st.error("The decision was not recorded:")
        st.code(st.session_state[ERROR], language=None)
    try:
        store = ReviewStore(view.path)
        progress = store.progress(view.issue_keys)
    except InputError as e:
        st.error("Cannot read this audit's decisions:")
        st.code(str(e), language=None)
        return
    done = progress["decided"] / progress["total"] if progress["total"] else 1.0
    st.progress(done, text=f"{progress['decided']:,} of {progress['total']:,} label issues decided "
                           f"(accept {progress['accept']:,}, reject {progress['reject']:,}, edit {progress['edit']:,})")
    item = st.session_state.get(CURRENT)
    point_row = None if item is None else view.point_row(*item)
    if point_row is None:
        st.info("Nothing to review: the queue is empty. Loosen the filters.")
        return
    row = view.points.iloc[point_row]
    position = queue.position(item)
    where = f"item {position + 1:,} of {len(queue):,}" if position is not None else "not in the queue"
    issue = row.get("issue_type")
    issue = issue if isinstance(issue, str) and issue else "none"
    partner = row.get("partner")
    if issue in ("chain_swap", "duplicate") and partner is not None and int(partner) >= 0:
        relation = "exchanged with" if issue == "chain_swap" else "on top of"
        names = view.scheme_points.set_index("point")["point_name"]
        issue += f" ({relation} point {int(partner)} {names.get(int(partner), '')})"
    st.markdown(f"**{md_text(item[0])}**, point {item[1]} **{md_text(row.point_name)}** ({md_text(row.group)}), "
                f"{where}: issue **{md_text(issue)}**, label_score {_float(row, 'label_score'):.3g}, "
                f"searched NME {_float(row, 'searched_nme'):.3f}")
    history = store.history(*item)
    if len(history):
        last = history.iloc[-1]
        position_text = "" if pd.isna(last.x) else f" at ({last.x:.2f}, {last.y:.2f})"
        st.success(f"Decided: {last.decision}{position_text} by {md_text(last.reviewer)}, {md_text(last.created_at)}")
    decision_ui(view, queue, item, row, reviewer)
    left, right = st.columns([1.1, 1])
    with left:
        face_ui(view, item, row)
    with right:
        heatmap_ui(view, item, row)


def review_ui(view: AuditView, reviewer: str) -> None:
    """Draw the review page."""
    st.header("Review")
    previous = st.session_state.get(AUDIT)
    if previous != str(view.path):  # another audit: start afresh, the URL's item belongs to the audit left
        for key in (CURRENT, SHOWN, QUEUE, ERROR):
            st.session_state.pop(key, None)
        for name in ("image", "point") if previous is not None else ():
            if name in st.query_params:
                del st.query_params[name]
        st.session_state[AUDIT] = str(view.path)
    filters = filters_ui(view)
    queue = load_queue(view, filters)
    queue_ui(view, queue)
    panel_ui(view, queue, reviewer)
