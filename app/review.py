"""The review page: a queue of items, the most error to remove first, and a panel where the curator decides on one.

An item is a point or a whole face: a face whose left and right sides are swapped is one item of all its swapped
points (`auditor.triage`), and any face opens whole from one of its points ("Face view"). The current item
`(image_id, point)`, point FACE for a whole face, lives in `st.session_state` and in the URL (`?image=...&point=...`,
`point=face` for a face: a deep link). The queue's row selection sets it; every decision is written through
`ReviewStore` at once and moves it to the next undecided item of the queue. On a face: Accept all proposals and
Reject all (one decision per flagged point, one transaction), and on a swapped face Accept mirrored labels (one
decision on the face). On a point: Accept, Reject, or place the point by a click on the zoom, nudge it with the
arrow keys (one image pixel a press) and record it with Edit; the zoom level stays from one item to the next.

The panel is a fragment: a click redraws the panel alone, and the queue's decision column catches up on the next
full rerun (a filter change, a row selected).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

from app import figures
from app.audit_view import NO_ISSUE, AuditView, audit_version, crop_pixels, image_data_uri
from app.text import md_text
from auditor.audit_dir import Audit, proposals
from auditor.errors import InputError
from auditor.export import APPLIED, error_removed
from auditor.geometry import apply_affine
from auditor.review import ReviewStore, bulk_decisions
from auditor.triage import FACE, ORDERS, queue_items

CURRENT, QUEUE, SHOWN, ERROR, AUDIT = "current", "queue", "queue_shown", "review_error", "review_audit"
ZOOM, ZOOM_LEVEL, CLICK, CLICKED, ZOOM_SHOWN = "zoom", "zoom_level", "zoom_click", "zoom_clicked", "zoom_shown"
SURFACES, SURFACES_ON = "surfaces", "surfaces_on"  # the 3-D toggle's widget key, and the choice kept beside it
REMOVED = "removed_by_face"  # the audit's version, and image_id -> (its decisions' (count, max id, sum of ids), NME)
EDIT_X, EDIT_Y, EDIT_FOR, FACE_TABLE = "edit_x", "edit_y", "edit_for", "face_points"
FACE_COLUMNS = ["point", "point_name", "x_human", "y_human", "x_searched", "y_searched", "x_pred", "y_pred"]
QUEUE_COLUMNS = ["image_id", "point", "point_name", "group", "issue_type", "label_score", "gain", "displacement_nme",
                 "searched_nme"]
ORDER_NAMES = {"gain": "expected gain", "score": "label_score"}
SCAN = 64  # queue items `_next_undecided` checks one by one before it computes every item's decision
ZOOMS = (1, 2, 4, 8)  # the zoom's side is the face's normaliser over the level
DEFAULT_ZOOM = 2
MIN_ZOOM_HALF = 4.0  # image px: the closest zoom still shows a point's neighbourhood
ZOOM_WIDTH = 360  # display px
NUDGES = (("←", "Left", -1, 0), ("→", "Right", 1, 0), ("↑", "Up", 0, -1), ("↓", "Down", 0, 1))  # image y is down
STAT_COLUMNS = (("anisotropy", "Anisotropy", "{:.2f}"), ("angle", "Principal angle", "{:.0f}°"),
                ("gaussianity_human", "Gaussian-likeness at label", "{:.2f}"),
                ("gaussianity_searched", "… at searched", "{:.2f}"), ("flat_hat", "Flat-hat index", "{:.1f}"),
                ("peak", "Peak", "{:.2f}"))


def filters_ui(view: AuditView) -> dict:
    """Draw the queue's filters and order; returns them: issues_only, order, issue_types, groups, point_names,
    image_query."""
    p = view.points
    types = sorted({str(t) for t in p.issue_type.dropna().unique() if t} | {NO_ISSUE})
    groups = list(dict.fromkeys(view.scheme_points.group.astype(str)))
    names = view.scheme_points.point_name.astype(str).tolist()
    with st.expander("Filters and order", expanded=True):
        top = st.columns([1, 2, 2, 2])
        issues_only = top[0].checkbox("Label issues only", value=True, key="f_issues_only")
        order = top[1].radio("Order", ORDERS, key="f_order", format_func=ORDER_NAMES.get, horizontal=True,
                             help="expected gain: the probability that the label is wrong times how far the fix "
                                  "moves it (NME), the most error removed first; label_score: the most suspicious "
                                  "label first")
        issue_types = top[2].multiselect("Issue type", types, key="f_types", placeholder="any")
        group = top[3].multiselect("Group", groups, key="f_groups", placeholder="any")
        bottom = st.columns([3, 2])
        point_names = bottom[0].multiselect("Point", names, key="f_points", placeholder="any")
        image_query = bottom[1].text_input("Image id contains", key="f_image").strip()
    return {"issues_only": issues_only, "order": order, "issue_types": tuple(issue_types), "groups": tuple(group),
            "point_names": tuple(point_names), "image_query": image_query}


@dataclass(frozen=True)
class Queue:
    """The items to review in order: a read-only table, its keys, and the points of each whole-face item."""

    filters: tuple  # what it was built from: sorted (name, value) pairs of `filters_ui`
    table: pd.DataFrame  # QUEUE_COLUMNS, one row per item in queue order (point <NA> for a whole face)
    image_ids: np.ndarray  # (Q,) object
    points: np.ndarray  # (Q,) int64, FACE for a whole face
    index: pd.MultiIndex  # (image_id, point) -> position in the queue
    members: dict[str, np.ndarray]  # image_id -> the points of its whole-face item

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
    """The items of the labelled points passing `filters` (sorted items of `filters_ui`'s dict), in its order
    (`auditor.triage.queue_items`)."""
    p, f = view.points, dict(filters)
    keep = np.ones(len(p), dtype=bool)
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
    items = queue_items(p, view.gains, keep, order=f["order"])
    image_ids, points = items.image_id.astype(str).to_numpy(dtype=object), items.point.to_numpy(dtype=np.int64)
    table = items[QUEUE_COLUMNS].astype({"point": "Int64"})
    table.loc[points == FACE, "point"] = pd.NA
    whole_face, point = view.gains.whole_face.to_numpy(dtype=bool), p.point.to_numpy(dtype=np.int64)
    rows = {image_id: view.face_points[image_id] for image_id in image_ids[points == FACE]}
    members = {image_id: point[face[whole_face[face]]] for image_id, face in rows.items()}
    return Queue(filters, table, image_ids, points, pd.MultiIndex.from_arrays([image_ids, points]), members)


def load_queue(view: AuditView, filters: dict) -> Queue:
    """`build_queue`, once per audit version and filters (cache_resource: shared, read-only, never copied)."""
    return _cached_queue(view, str(view.path), audit_version(view.path), tuple(sorted(filters.items())))


@st.cache_resource(max_entries=16, show_spinner=False)
def _cached_queue(_view: AuditView, audit_dir: str, version: tuple[int, ...], filters: tuple) -> Queue:
    return build_queue(_view, filters)


def set_current(image_id: str, point: int) -> None:
    """Make (image_id, point) the current item (point FACE: the whole face), in the session and in the URL."""
    st.session_state[CURRENT] = (str(image_id), int(point))
    st.query_params["image"] = str(image_id)
    st.query_params["point"] = "face" if point == FACE else str(int(point))


def _deep_link(view: AuditView) -> tuple[str, int] | None:
    """The item the URL names (`?image=...&point=...`, `point=face` for the whole face), when the audit has it."""
    image_id, point = st.query_params.get("image"), st.query_params.get("point")
    if image_id is None:
        return None
    if point == "face":
        return (image_id, FACE) if image_id in view.face_points else None
    try:
        point = int(point)
    except (TypeError, ValueError):
        return None
    return (image_id, point) if view.point_row(image_id, point) is not None else None


def item_decisions(queue: Queue, decisions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(Q,) each item's decision as the queue shows it and (Q,) whether it is decided: a point's latest decision; a
    whole face's, when all its points share one ('mixed' when they differ, 'k of n' while some are undecided)."""
    keys = pd.MultiIndex.from_arrays([decisions.image_id.astype(str).to_numpy(dtype=object),
                                      decisions.point.to_numpy(dtype=np.int64)])
    where = queue.index.get_indexer(keys)
    shown = np.full(len(queue), "", dtype=object)
    shown[where[where >= 0]] = decisions.decision.to_numpy(dtype=object)[where >= 0]
    done = shown != ""
    faces = decisions[decisions.image_id.isin(queue.members.keys())]  # a face without any decision: undecided
    for image_id, made in faces.groupby("image_id", sort=False):
        points = queue.members[image_id]
        made = made.decision[made.point.isin(points)]
        position = queue.position((image_id, FACE))
        done[position] = len(made) == len(points)
        if len(made):
            shown[position] = (made.iloc[0] if made.nunique() == 1 else "mixed") if done[position] else \
                f"{len(made)} of {len(points)}"
    return shown, done


def _next_undecided(queue: Queue, item: tuple[str, int] | None, decisions: pd.DataFrame) -> tuple[str, int] | None:
    """The first item of the queue after `item` (from the start when it is not in the queue) not decided, as
    `item_decisions` decides: the next SCAN items are checked one by one (the usual case: the next item is
    undecided), the rest of the queue at once."""
    start = queue.position(item)
    first = 0 if start is None else start + 1
    decided = set(zip(decisions.image_id.astype(str), decisions.point.to_numpy(dtype=np.int64).tolist(), strict=True))
    for position in range(first, min(first + SCAN, len(queue))):
        image_id, point = queue.item(position)
        if point == FACE:
            made = sum((image_id, int(p)) in decided for p in queue.members[image_id])
            if made == 0 or made < len(queue.members[image_id]):
                return image_id, point
        elif (image_id, point) not in decided:
            return image_id, point
    if first + SCAN >= len(queue):
        return None
    _, done = item_decisions(queue, decisions)
    following = np.flatnonzero(~done[first + SCAN:])
    return queue.item(following[0] + first + SCAN) if len(following) else None


def _on_select(queue: Queue) -> None:
    rows = st.session_state[QUEUE]["selection"]["rows"]
    if rows:
        set_current(*queue.item(rows[0]))


def _record(view: AuditView, queue: Queue, item: tuple[str, int], write) -> None:
    """Write a decision on `item` (`write(store)`), then move to the next undecided item of the queue; an error is
    kept for the panel to show."""
    try:
        store = ReviewStore(view.path)
        write(store)
        following = _next_undecided(queue, item, store.latest())
    except (InputError, ValueError) as e:
        st.session_state[ERROR] = str(e)
        return
    st.session_state.pop(ERROR, None)
    if following is not None:
        set_current(*following)


def _decide(view: AuditView, queue: Queue, item: tuple[str, int], decision: str, xy: tuple[float, float] | None,
            reviewer: str) -> None:
    """Record a decision on the point `item` (an edit: the placed position), then move on."""
    if decision == "edit":
        xy = (st.session_state[EDIT_X], st.session_state[EDIT_Y])
    x, y = (None, None) if xy is None or not all(math.isfinite(v) for v in xy) else xy
    _record(view, queue, item, lambda store: store.record(item[0], item[1], decision, x=x, y=y,
                                                          reviewer=reviewer or None))


def flagged_points(view: AuditView, image_id: str) -> pd.DataFrame:
    """The labelled points of a face flagged as label issues: its rows of `points`."""
    face = view.points.iloc[view.face_points[image_id]]
    labelled = np.isfinite(face.x_human.to_numpy(dtype=np.float64)) & np.isfinite(face.y_human.to_numpy(np.float64))
    return face[face.is_label_issue.fillna(False).to_numpy(dtype=bool) & labelled]


def _decide_face(view: AuditView, queue: Queue, image_id: str, decision: str, reviewer: str) -> None:
    """Record a decision on the whole face in one transaction, then move on: `mirror` (one face-level row), or
    `accept` / `reject` of every flagged point."""
    def write(store: ReviewStore) -> None:
        if decision == "mirror":
            store.record_face(image_id, "mirror", reviewer=reviewer or None)
        else:
            store.record_many(bulk_decisions(flagged_points(view, image_id), decision, reviewer=reviewer or None))

    _record(view, queue, (image_id, FACE), write)


def _step(queue: Queue, item: tuple[str, int], step: int) -> None:
    position = queue.position(item)
    target = 0 if position is None else position + step
    if 0 <= target < len(queue):
        set_current(*queue.item(target))


def _open_point(image_id: str, points: np.ndarray) -> None:
    rows = st.session_state[FACE_TABLE]["selection"]["rows"]
    if rows:
        set_current(image_id, int(points[rows[0]]))


def queue_ui(view: AuditView, queue: Queue) -> None:
    """Draw the queue, the decision of each item beside it; the current item is its selected row."""
    try:
        decisions = ReviewStore(view.path).latest()
    except InputError:  # the panel says why
        decisions = pd.DataFrame({"image_id": pd.Series(dtype=object), "point": pd.Series(dtype=np.int64),
                                  "decision": pd.Series(dtype=object)})
    shown, _ = item_decisions(queue, decisions)
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
    faces = len(queue.members)
    order = ORDER_NAMES[dict(queue.filters)["order"]]
    st.caption(f"{len(queue):,} items in the queue ({faces:,} of them whole faces with swapped sides), by {order}. "
               "Select a row to review it.")
    st.dataframe(queue.table.assign(decision=shown), key=QUEUE, on_select=partial(_on_select, queue),
                 selection_mode="single-row", hide_index=True, height=280, lazy=False, column_config={
                     "point": st.column_config.NumberColumn(help="empty: the whole face"),
                     "label_score": st.column_config.NumberColumn(format="%.2e"),
                     "gain": st.column_config.NumberColumn("expected gain", format="%.3f",
                                                           help="P(label wrong) × fix NME (NME)"),
                     "displacement_nme": st.column_config.NumberColumn("fix NME", format="%.3f",
                                                                       help="how far the fix moves the labels"),
                     "searched_nme": st.column_config.NumberColumn("searched NME", format="%.3f")})


def _float(row: pd.Series, column: str) -> float:
    value = row.get(column, math.nan)
    return math.nan if value is None or pd.isna(value) else float(value)


def _xy(row: pd.Series, prefix: str) -> np.ndarray:
    return np.array([_float(row, f"x_{prefix}"), _float(row, f"y_{prefix}")])


def _face_image(view: AuditView, image_id: str, face: pd.DataFrame) -> tuple[str | None, str | None, tuple, tuple]:
    """The face's image file (None when not found or unreadable, with a warning), its data URI, its (width,
    height) and the box (x0, y0, x1, y1) that shows it all: without an image, the points'."""
    path = view.image_file(image_id)
    try:
        uri, size = image_data_uri(str(path)) if path is not None else (None, None)
    except OSError:  # PIL's UnidentifiedImageError included: a file that is not an image
        path, uri, size = None, None, None
    if size is None:
        st.warning("Image not found or unreadable; the points are drawn alone.")
        xy = face[["x_human", "y_human", "x_searched", "y_searched", "x_pred", "y_pred"]].to_numpy(dtype=np.float64)
        lo, hi = np.nanmin(xy.reshape(-1, 2), axis=0), np.nanmax(xy.reshape(-1, 2), axis=0)
        box = (lo[0] - 10, lo[1] - 10, hi[0] + 10, hi[1] + 10)
        return None, None, (int(hi[0] - lo[0]) + 20, int(hi[1] - lo[1]) + 20), box
    return str(path), uri, size, (-0.5, -0.5, size[0] - 0.5, size[1] - 0.5)


def _kept_widget(widget, key: str, kept: str, default: object, *args, **kwargs) -> object:
    """Draw `widget(*args, key=key, **kwargs)` and return its value, kept under `kept` too: Streamlit drops a
    widget's state on a run that does not draw it (another page, a whole face), and the kept value seeds it again."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(kept, default)
    st.session_state[kept] = value = widget(*args, key=key, **kwargs)
    return value


def zoom_level_ui() -> int:
    """Draw the zoom level's choice; returns it. It stays from one item to the next, and across pages."""
    return _kept_widget(st.radio, ZOOM, ZOOM_LEVEL, DEFAULT_ZOOM, "Zoom", ZOOMS, horizontal=True,
                        format_func=lambda z: f"{z}×")


def _place(item: tuple[str, int]) -> None:
    """Move the placed point to the zoom's last click when it is new and on the zoom of `item` (before the position's
    inputs are drawn)."""
    click, shown = st.session_state.get(CLICK), st.session_state.get(ZOOM_SHOWN)
    if not click or shown is None or shown[0] != item or click.get("unix_time") == st.session_state.get(CLICKED):
        return
    st.session_state[CLICKED] = click.get("unix_time")
    x, y = figures.zoom_to_image((click["x"], click["y"]), shown[1], (click["width"], click["height"]))
    st.session_state[EDIT_X], st.session_state[EDIT_Y] = round(x, 2), round(y, 2)


def _nudge(dx: int, dy: int) -> None:
    st.session_state[EDIT_X] = round(float(st.session_state[EDIT_X]) + dx, 2)
    st.session_state[EDIT_Y] = round(float(st.session_state[EDIT_Y]) + dy, 2)


def zoom_ui(view: AuditView, item: tuple[str, int], row: pd.Series, face: pd.DataFrame, path: str | None,
            size: tuple[int, int], proposal: np.ndarray) -> None:
    """The zoom around the point at the chosen level, to click on: the labels (this point's ringed), the proposal
    (×) and the placed point (+) that Edit records; the arrow buttons (and keys) nudge it by one image pixel."""
    centre = _xy(row, "human")
    if not np.isfinite(centre).all():
        return
    level = zoom_level_ui()
    normaliser = float(view.images.normaliser.iat[view.image_row[item[0]]])
    half = max(MIN_ZOOM_HALF, 0.5 * normaliser / level) if math.isfinite(normaliser) else 40.0 / level
    if path is not None:
        box = figures.zoom_box(tuple(centre), half, size)
        pixels, edges = crop_pixels(path, box), figures.zoom_edges(box)
    else:
        pixels, edges = None, (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
    labels = face[face.point != item[1]][["x_human", "y_human"]].to_numpy(dtype=np.float64)
    placed = np.array([st.session_state[EDIT_X], st.session_state[EDIT_Y]], dtype=np.float64)
    marks = [*(("label", xy) for xy in labels), ("selected", centre), ("proposal", proposal), ("placed", placed)]
    st.session_state[ZOOM_SHOWN] = (item, edges)
    streamlit_image_coordinates(figures.zoom_image(pixels, edges, marks, width=ZOOM_WIDTH), key=CLICK,
                                cursor="crosshair", png_compression_level=1)
    buttons = st.columns(len(NUDGES) + 2, vertical_alignment="center")
    for column, (label, key, dx, dy) in zip(buttons, NUDGES, strict=False):
        column.button(label, key=f"nudge_{key.lower()}", shortcut=key, on_click=_nudge, args=(dx, dy),
                      width="stretch", help="Nudge the placed point by one image pixel")
    buttons[-2].caption(f"placed at ({placed[0]:.2f}, {placed[1]:.2f})")
    st.caption("Click to place the point (+); the arrow keys nudge it; Edit records it. × the proposal, the ringed "
               "dot the label.")


def face_ui(view: AuditView, item: tuple[str, int], row: pd.Series, proposal: np.ndarray) -> None:
    """The face with its points, and the zoom around the current point."""
    face = view.points[FACE_COLUMNS].iloc[view.face_points[item[0]]]
    path, uri, size, box_all = _face_image(view, item[0], face)
    st.plotly_chart(figures.face_figure(face, item[1], image_uri=uri, view=box_all), key="face", theme=None)
    zoom_ui(view, item, row, face, path, size, proposal)


def heatmap_ui(view: AuditView, item: tuple[str, int], row: pd.Series) -> None:
    """The point's heatmap window, flat and, when the curator turns them on, as a surface beside the ideal Gaussian,
    and its shape measures."""
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
    if _kept_widget(st.toggle, SURFACES, SURFACES_ON, False, "3-D surfaces", help="The window and the ideal "
                    "Gaussian as surfaces. A browser without graphics acceleration takes about 0.4 s more to draw "
                    "each item with them"):
        peak = float(window.max()) if window.size and window.max() > 0 else 1.0
        ideal = figures.ideal_window(window.shape[-1], tuple(marks["human"] - origin), view.sigma, peak)
        st.plotly_chart(figures.surface_figure(window, ideal, origin, sigma=view.sigma), key="surface")
    st.caption(f"Heatmap pixels; {window.shape[-1]}×{window.shape[-1]} window around the label. The ideal Gaussian "
               "is centred on the label at the window's peak height.")


def decision_ui(view: AuditView, queue: Queue, item: tuple[str, int], proposal: np.ndarray, source: str,
                reviewer: str) -> None:
    """Accept / Reject / Edit (the placed position), each recorded at once; the face view; moving through the
    queue."""
    buttons = st.columns(5)
    buttons[0].button("Accept", type="primary", shortcut="A", on_click=_decide, key="accept",
                      args=(view, queue, item, "accept", tuple(proposal), reviewer), width="stretch",
                      help=f"Take the proposed position (the {source} one)")
    buttons[1].button("Reject", shortcut="X", on_click=_decide, key="reject",
                      args=(view, queue, item, "reject", None, reviewer), width="stretch",
                      help="Keep the human label")
    buttons[2].button("Face view", shortcut="F", on_click=set_current, args=(item[0], FACE), key="open_face",
                      width="stretch", help="The whole face: its flagged points, decided together")
    buttons[3].button("Previous", shortcut="P", on_click=_step, args=(queue, item, -1), key="previous",
                      width="stretch")
    buttons[4].button("Next", shortcut="N", on_click=_step, args=(queue, item, 1), key="next", width="stretch")
    with st.form("edit", border=False):
        columns = st.columns([2, 2, 1], vertical_alignment="bottom")
        columns[0].number_input("x (image px)", key=EDIT_X, step=0.5, format="%.2f")
        columns[1].number_input("y (image px)", key=EDIT_Y, step=0.5, format="%.2f")
        columns[2].form_submit_button("Edit", on_click=_decide, args=(view, queue, item, "edit", None, reviewer),
                                      shortcut="E", width="stretch", help="Record the placed position")


def point_panel_ui(view: AuditView, queue: Queue, item: tuple[str, int], store: ReviewStore, reviewer: str) -> None:
    """The panel of one point: what the audit says, its decision, the buttons, the face and zoom, the heatmap."""
    row = view.points.iloc[view.point_row(*item)]
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
    xs, ys, source = proposals(row.to_frame().T)
    proposal = np.array([xs[0], ys[0]])
    if not np.isfinite(proposal).all():
        proposal = _xy(row, "human")
    if st.session_state.get(EDIT_FOR) != item:  # a new item: the placed point starts at the proposal
        st.session_state[EDIT_X], st.session_state[EDIT_Y] = (round(float(v), 2) for v in proposal)
        st.session_state[EDIT_FOR] = item
    _place(item)
    decision_ui(view, queue, item, proposal, source[0], reviewer)
    left, right = st.columns([1.1, 1])
    with left:
        face_ui(view, item, row, proposal)
    with right:
        heatmap_ui(view, item, row)


def face_panel_ui(view: AuditView, queue: Queue, image_id: str, store: ReviewStore, decisions: pd.DataFrame,
                  reviewer: str) -> None:
    """The panel of a whole face: its flagged points, Accept all proposals / Reject all and, where its sides are
    swapped, Accept mirrored labels, each one click; the face with arrows to the fixes."""
    rows = view.face_points[image_id]
    gains = view.gains.iloc[rows]
    face = view.points[FACE_COLUMNS].iloc[rows].assign(x_fix=gains.x_fix.to_numpy(), y_fix=gains.y_fix.to_numpy())
    flagged = flagged_points(view, image_id)
    swapped = bool(gains.whole_face.any())
    position = queue.position((image_id, FACE))
    where = f"item {position + 1:,} of {len(queue):,}" if position is not None else "not in the queue"
    kinds = flagged.issue_type.fillna("").astype(str).value_counts()
    summary = ", ".join(f"{md_text(kind or NO_ISSUE)} {count}" for kind, count in kinds.items())
    st.markdown(f"**{md_text(image_id)}**, the whole face, {where}: {len(flagged)} flagged points"
                + (f" ({summary})" if summary else "") + (": **its left and right sides are swapped**" if swapped
                                                          else ""))
    history = store.history(image_id, None)
    if len(history):
        last = history.iloc[-1]
        st.success(f"Decided on the whole face: {last.decision} by {md_text(last.reviewer)}, "
                   f"{md_text(last.created_at)}")
    item = (image_id, FACE)
    buttons = st.columns(5)
    if swapped:
        buttons[0].button("Accept mirrored labels", type="primary", shortcut="M", key="mirror_face",
                          on_click=_decide_face, args=(view, queue, image_id, "mirror", reviewer), width="stretch",
                          help="One decision: every point takes the label of its left / right partner")
    buttons[1].button("Accept all proposals", type="secondary" if swapped else "primary", shortcut="A",
                      key="accept_face", on_click=_decide_face, args=(view, queue, image_id, "accept", reviewer),
                      width="stretch", disabled=flagged.empty, help="Accept the proposal of every flagged point")
    buttons[2].button("Reject all", shortcut="X", key="reject_face", on_click=_decide_face,
                      args=(view, queue, image_id, "reject", reviewer), width="stretch", disabled=flagged.empty,
                      help="Keep the label of every flagged point")
    buttons[3].button("Previous", shortcut="P", on_click=_step, args=(queue, item, -1), key="previous",
                      width="stretch")
    buttons[4].button("Next", shortcut="N", on_click=_step, args=(queue, item, 1), key="next", width="stretch")
    left, right = st.columns([1.1, 1])
    with left:
        _, uri, _, box_all = _face_image(view, image_id, face)
        arrows = ("fix", "human → mirrored" if swapped else "human → proposed")
        st.plotly_chart(figures.face_figure(face, FACE, image_uri=uri, view=box_all, arrows=arrows), key="face",
                        theme=None)
    with right:
        decided = decisions[decisions.image_id == image_id].set_index("point").decision
        table = pd.DataFrame({"point": flagged.point.to_numpy(), "point_name": flagged.point_name.to_numpy(),
                              "issue_type": flagged.issue_type.fillna("").to_numpy(dtype=object),
                              "label_score": flagged.label_score.to_numpy(),
                              "fix NME": view.gains.displacement_nme.loc[flagged.index].to_numpy(),
                              "decision": decided.reindex(flagged.point.to_numpy()).fillna("").to_numpy()})
        st.session_state[FACE_TABLE] = {"selection": {"rows": [], "columns": [], "cells": []}}
        st.dataframe(table, key=FACE_TABLE, on_select=partial(_open_point, image_id, table.point.to_numpy()),
                     selection_mode="single-row", hide_index=True, height=420, column_config={
                         "label_score": st.column_config.NumberColumn(format="%.2e"),
                         "fix NME": st.column_config.NumberColumn(format="%.3f")})
        st.caption("The face's flagged points. Select a row to review that point alone.")


def _error_removed(view: AuditView, decisions: pd.DataFrame) -> float:
    """The error the corrections decided so far remove, NME, summed over the decided faces: each face's share
    (`auditor.export.error_removed`) is computed from its rows alone and kept in the session until its decisions
    change."""
    applied = decisions[decisions.decision.isin(APPLIED) & decisions.image_id.isin(view.face_points.keys())]
    if applied.empty:
        return 0.0
    faces = decisions[decisions.image_id.isin(applied.image_id.unique())]
    signatures = faces.groupby("image_id", sort=False).id.agg(["size", "max", "sum"])
    version = (str(view.path), audit_version(view.path))
    if st.session_state.get(REMOVED, {}).get("version") != version:
        st.session_state[REMOVED] = {"version": version, "faces": {}}
    known = st.session_state[REMOVED]["faces"]
    stale = [f for f, sig in zip(signatures.index, signatures.itertuples(index=False), strict=True)
             if known.get(f, (None,))[0] != tuple(sig)]
    if stale:
        rows = np.concatenate([view.face_points[f] for f in stale])
        share = error_removed(Audit(view.manifest, view.points.iloc[rows], view.images),
                              faces[faces.image_id.isin(stale)])
        for f in stale:
            known[f] = (tuple(signatures.loc[f]), float(share.get(f, 0.0)))
    return float(sum(known[f][1] for f in signatures.index))


@st.fragment
def panel_ui(view: AuditView, queue: Queue, reviewer: str) -> None:
    """The review panel of the current item: progress, the error removed so far, and the point's or face's panel."""
    if ERROR in st.session_state:
        st.error("The decision was not recorded:")
        st.code(st.session_state[ERROR], language=None)
    try:
        store = ReviewStore(view.path)
        decisions = store.latest()
        progress = store.progress(view.issue_keys, latest=decisions)
        removed = _error_removed(view, decisions)
    except InputError as e:
        st.error("Cannot read this audit's decisions:")
        st.code(str(e), language=None)
        return
    done = progress["decided"] / progress["total"] if progress["total"] else 1.0
    top = st.columns([4, 1], vertical_alignment="bottom")
    top[0].progress(done, text=f"{progress['decided']:,} of {progress['total']:,} label issues decided (accept "
                               f"{progress['accept']:,}, reject {progress['reject']:,}, edit {progress['edit']:,}, "
                               f"mirrored {progress['mirror']:,})")
    top[1].metric("Error removed so far (NME)", f"{removed:.3f}",
                  help="The displacement of the accepted, edited and mirrored corrections, summed")
    item = st.session_state.get(CURRENT)
    if item is not None and item[1] == FACE and item[0] in view.face_points:
        face_panel_ui(view, queue, item[0], store, decisions, reviewer)
    elif item is not None and view.point_row(*item) is not None:
        point_panel_ui(view, queue, item, store, reviewer)
    else:
        st.info("Nothing to review: the queue is empty. Loosen the filters.")


def review_ui(view: AuditView, reviewer: str) -> None:
    """Draw the review page."""
    st.header("Review")
    previous = st.session_state.get(AUDIT)
    if previous != str(view.path):  # another audit: start afresh, the URL's item belongs to the audit left
        for key in (CURRENT, SHOWN, QUEUE, ERROR, EDIT_FOR, ZOOM_SHOWN, FACE_TABLE, REMOVED):
            st.session_state.pop(key, None)
        for name in ("image", "point") if previous is not None else ():
            if name in st.query_params:
                del st.query_params[name]
        st.session_state[AUDIT] = str(view.path)
    filters = filters_ui(view)
    queue = load_queue(view, filters)
    queue_ui(view, queue)
    panel_ui(view, queue, reviewer)
