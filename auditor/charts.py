"""The charts of an audit, shared by the app's overview and annotators pages and `auditor report`. Pure: small
aggregate tables in (`auditor.report.overview_tables`, AUDIT/annotators.parquet), plotly figures out.

Plotly reads a few HTML tags in its text and labels, so every dataset string goes through `plot_text` first.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from auditor.metrics import auc, ced_curve

NO_ISSUE = "(none)"  # how the issue type of points without an issue is shown
FLAGGED, NOT_FLAGGED = "label issue", "not flagged"
COLOURS = {FLAGGED: "#d62728", NOT_FLAGGED: "#9e9e9e", "contour": "#ff7f0e", "crisp": "#1f77b4"}
CED_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c")


def plot_text(value: object) -> str:
    """A string for a plotly text or label, which reads a few HTML tags: escaped."""
    return html.escape(str(value))


def _layout(fig: go.Figure, *, height: int = 340, **layout) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"}, **layout)
    return fig


def issue_type_figure(counts: pd.DataFrame) -> go.Figure:
    """Bars of points by issue type, split into flagged (`is_label_issue`) and not; `counts` has issue_type,
    flagged, count."""
    fig = go.Figure()
    for flagged, name in ((True, FLAGGED), (False, NOT_FLAGGED)):
        part = counts[counts.flagged == flagged]
        fig.add_trace(go.Bar(x=[plot_text(t) for t in part.issue_type], y=part["count"], name=name,
                             marker_color=COLOURS[name]))
    return _layout(fig, barmode="stack", xaxis_title="issue type", yaxis_title="points")


def group_figure(counts: pd.DataFrame) -> go.Figure:
    """Stacked bars of label issues by point group and issue type; `counts` has group, issue_type, count."""
    fig = go.Figure()
    for issue_type, part in counts.groupby("issue_type", sort=True):
        fig.add_trace(go.Bar(x=[plot_text(g) for g in part.group], y=part["count"], name=plot_text(issue_type)))
    return _layout(fig, barmode="stack", xaxis_title="point group", yaxis_title="label issues")


def score_histogram_figure(log10_edges: np.ndarray, counts: dict[str, np.ndarray],
                           threshold: float | None) -> go.Figure:
    """The `label_score` distribution on a log axis: counts per bin of log10(score) for flagged and other points,
    and the issue threshold when the manifest records one."""
    centres = (log10_edges[:-1] + log10_edges[1:]) / 2
    width = float(np.diff(log10_edges).mean())
    fig = go.Figure()
    for name, values in counts.items():
        fig.add_trace(go.Bar(x=centres, y=values, width=width, name=name, marker_color=COLOURS[name],
                             customdata=10.0**centres, hovertemplate="score ≈ %{customdata:.2g}: %{y}"))
    if threshold is not None and threshold > 0:
        fig.add_vline(x=float(np.log10(threshold)), line_dash="dash", annotation_text=f"threshold {threshold:.3g}")
    ticks = np.arange(np.floor(log10_edges[0]), 1)
    return _layout(fig, barmode="stack", bargap=0, xaxis={"title": "label_score (log scale; lower = more likely "
                   "wrong)", "tickvals": ticks, "ticktext": [f"1e{int(t)}" for t in ticks]}, yaxis_title="points")


def ambiguity_figure(per_point: pd.DataFrame) -> go.Figure:
    """Mean heatmap anisotropy of each point, contour points apart; `per_point` has point, point_name, group,
    is_contour, anisotropy."""
    fig = go.Figure()
    for contour, name in ((True, "contour"), (False, "crisp")):
        part = per_point[per_point.is_contour == contour]
        fig.add_trace(go.Bar(x=part.point, y=part.anisotropy, name=f"{name} points", marker_color=COLOURS[name],
                             text=[plot_text(f"{n} ({g})") for n, g in zip(part.point_name, part.group, strict=True)],
                             textposition="none", hovertemplate="%{x} %{text}: %{y:.2f}<extra></extra>"))
    return _layout(fig, xaxis_title="point", yaxis={"title": "mean anisotropy 1 − λ2/λ1", "range": [0, 1]})


def ced_figure(nmes: dict[str, np.ndarray], max_threshold: float) -> go.Figure:
    """Cumulative error distributions of per-face NME (N,) of each pair of point sets, AUC in the legend."""
    fig = go.Figure()
    for (name, values), colour in zip(nmes.items(), CED_COLOURS, strict=False):
        thresholds, fractions = ced_curve(values, max_threshold=max_threshold, steps=201)
        fig.add_trace(go.Scatter(x=thresholds, y=fractions, mode="lines", line={"color": colour},
                                 name=f"{name} (AUC@{max_threshold:g} {auc(values, max_threshold):.3f})"))
    return _layout(fig, xaxis_title="NME (per face)", yaxis={"title": "fraction of faces", "range": [0, 1.01]})


def annotator_ranking_figure(table: pd.DataFrame) -> go.Figure:
    """Each annotator's mean error against the consensus with its bootstrap 95 % interval as error bars, in the
    table's order (best first) from the top; `table` has annotator, faces, mean_error, mean_error_lo, mean_error_hi."""
    mean = table.mean_error.to_numpy(dtype=np.float64)
    above = np.nan_to_num(table.mean_error_hi.to_numpy(dtype=np.float64) - mean)  # no interval (bootstrap 0): none
    below = np.nan_to_num(mean - table.mean_error_lo.to_numpy(dtype=np.float64))
    fig = go.Figure(go.Scatter(
        x=mean, y=[plot_text(a) for a in table.annotator], mode="markers", marker={"size": 9, "color": CED_COLOURS[0]},
        error_x={"type": "data", "symmetric": False, "array": above, "arrayminus": below}, customdata=table.faces,
        hovertemplate="%{y}: %{x:.4f} (%{customdata} faces)<extra></extra>"))
    return _layout(fig, height=max(200, 60 + 26 * len(table)), xaxis={"title": "mean error against the consensus "
                   "(NME), 95 % interval", "rangemode": "tozero"},
                   yaxis={"type": "category", "autorange": "reversed"})
