"""`auditor report`: one self-contained HTML page on an audit, for people who will not run the app.

The page opens offline: plotly's JS is embedded once and the faces are inline JPEG thumbnails (data URIs). It holds
the dataset summary and the calibration, the overview charts (also the app's: `overview_tables` feeds both), the
CED of what can be measured without the truth, each point group's issue rate, the worst faces with their labels and
the proposals drawn, the annotators' ranking where the audit has one, and the decisions recorded so far
(AUDIT/reviews.sqlite, read, never created).

Every string from the dataset or the audit (image ids and paths, point and group names, issue types, reviewers,
manifest fields) is escaped with `html.escape`: the page never renders one as HTML.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.io as pio
from PIL import Image, ImageDraw

from auditor import __version__, charts
from auditor.atomic import atomic_write_text
from auditor.audit_dir import (
    ANNOTATORS,
    CALIBRATION_DIR,
    REVIEWS,
    TOLERANCES,
    Audit,
    audit_path,
    dataset_location,
    image_roots,
    load_annotators,
    load_audit,
    locate_image,
    proposals,
)
from auditor.errors import InputError
from auditor.metrics import summary
from auditor.outputs import check_apart, check_writable_location

WORST = 24  # faces shown by default
SCORE_FLOOR = 1e-12  # scores below it share the lowest bin of the log histogram
SCORE_BINS = 60
THUMBNAIL_SIDE = 160  # px
SUPERSAMPLE = 2  # marks are drawn at this multiple of the thumbnail's side, then scaled down: smooth edges
CROP_MARGIN = 0.15  # of the face's extent, on each side of the thumbnail's crop
HUMAN_RGB, PROPOSED_RGB, MISSING_RGB = (44, 160, 44), (214, 39, 40), (200, 200, 200)  # the app's green and red


def overview_tables(points: pd.DataFrame, images: pd.DataFrame, manifest: dict) -> dict:
    """The overview's counts of an audit (points.parquet, images.parquet, manifest.json): faces, points, labelled,
    issues, faces_with_issues, swapped_faces (None without the column), by_type (issue_type, flagged, count),
    by_group (group, issue_type, count of label issues), the label_score histogram on a log axis (score_edges
    (B+1,) log10, score_counts {FLAGGED, NOT_FLAGGED: (B,)}) and the manifest's issue threshold."""
    flagged = points.is_label_issue.fillna(False).to_numpy(dtype=bool)
    issue_type = points.issue_type.fillna("").astype(str).replace("", charts.NO_ISSUE)
    by_type = pd.DataFrame({"issue_type": issue_type, "flagged": flagged}).value_counts().rename("count").reset_index()
    by_type = by_type.assign(none=by_type.issue_type == charts.NO_ISSUE).sort_values(["none", "issue_type"]).drop(
        columns="none")
    by_group = (pd.DataFrame({"group": points.group[flagged].astype(str), "issue_type": issue_type[flagged]})
                .value_counts().rename("count").reset_index().sort_values(["group", "issue_type"]))
    score = points.label_score.to_numpy(dtype=np.float64, na_value=np.nan)
    log_score = np.log10(np.clip(score[np.isfinite(score)], SCORE_FLOOR, 1.0))
    finite_flagged = flagged[np.isfinite(score)]
    edges = np.linspace(min(np.floor(log_score.min()), -1.0) if len(log_score) else -1.0, 0.0, SCORE_BINS + 1)
    histogram = {charts.FLAGGED: np.histogram(log_score[finite_flagged], edges)[0],
                 charts.NOT_FLAGGED: np.histogram(log_score[~finite_flagged], edges)[0]}
    labelled = np.isfinite(points.x_human.to_numpy(dtype=np.float64)) & np.isfinite(
        points.y_human.to_numpy(dtype=np.float64))
    return {
        "faces": len(images), "points": len(points), "labelled": int(labelled.sum()), "issues": int(flagged.sum()),
        "faces_with_issues": int(points.image_id[flagged].nunique()),
        "swapped_faces": int(images.swapped_sides.sum()) if "swapped_sides" in images else None,
        "by_type": by_type, "by_group": by_group, "score_edges": edges, "score_counts": histogram,
        "threshold": _number((manifest.get("scoring") or {}).get("issue_threshold")),
    }


def positions(points: pd.DataFrame, name: str) -> np.ndarray:
    """(P, 2) one set of positions of points.parquet (`name`: 'human', 'searched', 'pred', ...), image px."""
    return points[[f"x_{name}", f"y_{name}"]].to_numpy(dtype=np.float64)


def face_nme(points: pd.DataFrame, images: pd.DataFrame, xy_a: np.ndarray, xy_b: np.ndarray) -> pd.Series:
    """Per-face NME between two positions (P, 2) of every row of `points`, image px: the face's mean distance over
    the points where both are finite, over its normaliser (images.parquet); by image_id, NaN for a face without any."""
    distance = np.hypot(*(xy_a - xy_b).T)
    # the normaliser is constant within a face, so the face's mean distance over it is the mean of the point NMEs
    mean_px = pd.Series(distance).groupby(points.image_id.to_numpy(dtype=object)).mean()
    return mean_px / images.set_index("image_id").normaliser.reindex(mean_px.index).to_numpy()


def ced_max(nmes: dict[str, np.ndarray]) -> float:
    """The CED's x range: 0.10 (the usual failure threshold), or more when many faces lie beyond it."""
    values = np.concatenate([v[np.isfinite(v)] for v in nmes.values()] or [np.zeros(1)])
    q = float(np.quantile(values, 0.95)) if len(values) else 0.0
    return max(0.10, float(np.ceil(q * 20) / 20))


def _number(value: object) -> float | None:
    """A manifest field as a finite float, or None for anything else (missing, text, true / false)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def calibration_text(manifest: dict) -> str:
    """One line on the issue threshold: what the calibration expects of it (`auditor.calibration`), or why there
    is none."""
    threshold = _number((manifest.get("scoring") or {}).get("issue_threshold"))
    stated = "Issue threshold " + ("not recorded" if threshold is None else f"{threshold:g}")
    block = manifest.get("calibration")
    if not isinstance(block, dict):
        return f"{stated} (the audit predates calibration)."
    if not block.get("calibrated"):
        return f"{stated}, not calibrated: {block.get('reason', 'no reason recorded')}."
    numbers = {k: _number(block.get(k)) for k in ("threshold", "target_precision", "expected_precision",
                                                   "expected_recall", "planted")}
    if any(v is None for v in numbers.values()):
        return f"{stated}, calibrated (the manifest's calibration lacks some of its numbers)."
    return (f"Issue threshold {numbers['threshold']:.3g}, calibrated to a precision of "
            f"{numbers['target_precision']:.0%} on {int(numbers['planted']):,} errors planted into a copy of these "
            f"labels: expected precision {numbers['expected_precision']:.0%}, recall "
            f"{numbers['expected_recall']:.0%} of plain mistakes like those (swapped faces apart).")


def agreement_nmes(points: pd.DataFrame, images: pd.DataFrame, proposed_xy: np.ndarray) -> dict[str, np.ndarray]:
    """Per-face NME (N,) of the human labels against the audit's positions, what can be measured without the
    truth: its proposals (P, 2) for every point, the labels with every flagged point's proposal accepted, and the
    model's predictions."""
    human = positions(points, "human")
    fix = points.is_label_issue.to_numpy(dtype=bool) & np.isfinite(proposed_xy).all(axis=1)
    corrected = np.where(fix[:, None], proposed_xy, human)
    return {"labels vs proposals (every point)": face_nme(points, images, human, proposed_xy).to_numpy(),
            "labels vs corrected (flagged points' proposals)": face_nme(points, images, human, corrected).to_numpy(),
            "labels vs the model's predictions": face_nme(points, images, human, positions(points, "pred")).to_numpy()}


def group_rates(points: pd.DataFrame) -> pd.DataFrame:
    """One row per point group, in the scheme's order: labelled points, label issues, the issue rate and the
    issues of each issue type (a column each)."""
    labelled = np.isfinite(positions(points, "human")).all(axis=1)
    flagged = points.is_label_issue.to_numpy(dtype=bool)
    group = points.group.astype(str).to_numpy(dtype=object)
    order = list(pd.unique(group))
    table = pd.DataFrame({"labelled": pd.Series(labelled).groupby(group).sum(),
                          "issues": pd.Series(flagged).groupby(group).sum()}).reindex(order)
    table["rate"] = table.issues / table.labelled.where(table.labelled > 0)
    kinds = pd.crosstab(group[flagged], points.issue_type.astype(str).to_numpy(dtype=object)[flagged])
    table = table.join(kinds.reindex(columns=sorted(kinds.columns))).fillna({c: 0 for c in kinds.columns})
    return table.astype({c: np.int64 for c in ("labelled", "issues", *kinds.columns)}).rename_axis("group")


def worst_faces(points: pd.DataFrame, n: int) -> pd.DataFrame:
    """The `n` faces of lowest face score (the lowest label_score of their points), among equals those with most
    label issues first: image_id, face_score, issues."""
    frame = pd.DataFrame({"image_id": points.image_id.to_numpy(dtype=object),
                          "score": points.label_score.to_numpy(dtype=np.float64, na_value=np.nan),
                          "issue": points.is_label_issue.to_numpy(dtype=bool)})
    by_face = frame.groupby("image_id", sort=False)
    faces = pd.DataFrame({"face_score": by_face.score.min(), "issues": by_face.issue.sum().astype(np.int64)})
    faces = faces.sort_values(["face_score", "issues"], ascending=[True, False], kind="stable", na_position="last")
    return faces.head(n).rename_axis("image_id").reset_index()


def thumbnail(image: Image.Image | None, human_xy: np.ndarray, proposed_xy: np.ndarray, flagged: np.ndarray, *,
              side: int = THUMBNAIL_SIDE, quality: int = 85) -> bytes:
    """A JPEG of one face, `side` px square: a crop around its labels (K, 2) and its flagged (K,) points' proposals
    (K, 2), image px, with each label drawn green and each flagged point's proposal red, joined by a red line; the
    marks alone on grey where `image` is None."""
    shown = np.concatenate([human_xy, proposed_xy[flagged]])
    shown = shown[np.isfinite(shown).all(axis=1)]
    if len(shown):
        centre = (shown.min(axis=0) + shown.max(axis=0)) / 2
        half = max(float((shown.max(axis=0) - shown.min(axis=0)).max()) / 2 * (1 + 2 * CROP_MARGIN), 8.0)
    elif image is not None:
        centre, half = np.array(image.size) / 2, max(image.size) / 2
    else:
        centre, half = np.zeros(2), 8.0
    big = side * SUPERSAMPLE
    if image is None:
        canvas = Image.new("RGB", (big, big), MISSING_RGB)
    else:
        # decode a large JPEG at a reduced size (a power of two), then halve more until the crop is near `big`
        full = np.array(image.size, dtype=np.float64)
        reduce = max(int(2 * half / big), 1)
        image.draft("RGB", (max(int(full[0] / reduce), 1), max(int(full[1] / reduce), 1)))
        image = image.convert("RGB")
        factor = max(int(2 * half * image.size[0] / full[0] / big), 1)
        if factor > 1:
            image = image.reduce(factor)
        ratio = image.size[0] / full[0]
        box = tuple(float(v) * ratio for v in (*(centre - half), *(centre + half)))
        canvas = image.transform((big, big), Image.Transform.EXTENT, box, resample=Image.Resampling.BILINEAR,
                                 fillcolor=MISSING_RGB)
    draw = ImageDraw.Draw(canvas)
    scale = big / (2 * half)
    to_canvas = (np.asarray(human_xy, dtype=np.float64) - (centre - half)) * scale
    proposed = (np.asarray(proposed_xy, dtype=np.float64) - (centre - half)) * scale
    r = 1.6 * SUPERSAMPLE
    for (x0, y0), (x1, y1) in zip(to_canvas[flagged], proposed[flagged], strict=True):
        if np.isfinite([x0, y0, x1, y1]).all():
            draw.line([(x0, y0), (x1, y1)], fill=PROPOSED_RGB, width=SUPERSAMPLE)
    for x, y in to_canvas[np.isfinite(to_canvas).all(axis=1)]:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=HUMAN_RGB)
    for x, y in proposed[flagged & np.isfinite(proposed).all(axis=1)]:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=PROPOSED_RGB)
    buffer = io.BytesIO()
    canvas.resize((side, side), Image.Resampling.LANCZOS).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def face_thumbnail(path: Path | None, human_xy: np.ndarray, proposed_xy: np.ndarray,
                   flagged: np.ndarray) -> tuple[bytes, str]:
    """`thumbnail` of a face whose image is the file `path` (None: not found), and why the marks are drawn on grey
    ('' when they are not)."""
    if path is None:
        return thumbnail(None, human_xy, proposed_xy, flagged), "image not found"
    try:
        with Image.open(path) as image:
            return thumbnail(image, human_xy, proposed_xy, flagged), ""
    except (OSError, ValueError, Image.DecompressionBombError) as e:  # not an image, truncated, or far too large
        return thumbnail(None, human_xy, proposed_xy, flagged), f"image unreadable ({type(e).__name__})"


def decisions_summary(audit_dir: Path, points: pd.DataFrame) -> dict:
    """What the curators decided so far, from AUDIT/reviews.sqlite (never created): present, error (why it could
    not be read), by_decision {accept, reject, edit: points}, issues (the audit's), issues_by_decision, reviewers
    (decided points per reviewer), last (the latest decision's time) and decided_issues (decided issues per
    image_id)."""
    from auditor.review import DECISIONS, ReviewStore

    if not os.path.lexists(audit_dir / REVIEWS):
        return {"present": False}
    try:
        latest = ReviewStore(audit_dir).latest()
    except InputError as e:
        return {"present": True, "error": str(e)}
    issues = points.loc[points.is_label_issue.to_numpy(dtype=bool), ["image_id", "point"]]
    keys = issues.astype({"image_id": str, "point": np.int64})
    on_issues = latest.merge(keys, on=["image_id", "point"])
    return {"present": True, "error": None, "by_decision": {d: int((latest.decision == d).sum()) for d in DECISIONS},
            "issues": len(keys), "issues_by_decision": {d: int((on_issues.decision == d).sum()) for d in DECISIONS},
            "reviewers": latest.reviewer.astype(str).value_counts(),
            "last": latest.created_at.max() if len(latest) else None,
            "decided_issues": on_issues.image_id.value_counts()}


def report_inputs(audit_dir: Path, manifest: dict, image_files: list[Path]) -> list[Path]:
    """What the report must never write over: the audit's files, the audited annotation file or folder, and the
    faces' images."""
    from auditor.export import audit_files

    sidecars = [audit_dir / (REVIEWS + end) for end in ("-wal", "-shm", "-journal")]
    extra = [audit_dir / name for name in (ANNOTATORS, TOLERANCES, CALIBRATION_DIR)]
    return [*audit_files(audit_dir), *sidecars, *extra, dataset_location(manifest, audit_dir)[0], *image_files]


def check_report_target(out: Path, inputs: list[Path]) -> None:
    """An InputError unless `out` may be written as the report: a file, apart from every input."""
    check_writable_location(out, field="--out")
    if out.is_dir():
        raise InputError("is a folder; give the path of the HTML file to write", path=out, field="--out")
    check_apart(out, inputs, field="--out")


def write_report(audit_dir: str | Path, out: str | Path, *, worst: int = WORST) -> dict:
    """Write the report on the audit at `audit_dir` to the HTML file `out` (atomically, refused over any input);
    return what it holds: faces, issues, worst (faces shown), bytes, decisions_error (None, or why
    AUDIT/reviews.sqlite could not be read)."""
    audit_dir, out = audit_path(audit_dir), Path(out)
    if worst < 0:
        raise InputError(f"expected 0 or more faces, got {worst}", field="--worst")
    audit = load_audit(audit_dir)
    roots = image_roots(audit.manifest, audit_dir)
    files = {p: locate_image(roots, p) for p in pd.unique(audit.images.image_path.astype(str).to_numpy(object))}
    check_report_target(out, report_inputs(audit_dir, audit.manifest, [f for f in files.values() if f is not None]))
    decisions = decisions_summary(audit_dir, audit.points)
    page, shown = render_report(audit, audit_dir, files, decisions, worst=worst)
    atomic_write_text(out, page)
    return {"faces": len(audit.images), "issues": int(audit.points.is_label_issue.sum()), "worst": shown,
            "bytes": len(page.encode("utf-8")), "decisions_error": decisions.get("error")}


# --- HTML -----------------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 0 24px 48px; color: #222; }
h1 { margin-bottom: 0; } h2 { margin-top: 40px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
nav a { margin-right: 14px; } .muted { color: #666; } .note { color: #444; max-width: 900px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f4f4f4; }
/* auto-fill, not auto-fit: each chart draws while the page is parsed, before the next cell exists; with auto-fit the
   first would take the whole row, draw at that width and be cut when the next cell arrives */
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 16px; }
.charts > div { min-width: 0; }
.faces { display: grid; grid-template-columns: repeat(auto-fill, minmax(176px, 1fr)); gap: 12px; }
.face { border: 1px solid #ddd; border-radius: 4px; padding: 6px; font-size: 12px; overflow-wrap: anywhere; }
.face img { display: block; width: 160px; height: 160px; margin-bottom: 4px; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 5px; vertical-align: middle; }
"""


def _text(value: object) -> str:
    """A dataset or audit string as HTML text: escaped, never markup."""
    return html.escape(str(value))


def _table(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """An HTML table of `frame` (its index the first column), every cell escaped; `formats` by column."""
    formats = formats or {}
    head = "".join(f"<th>{_text(c)}</th>" for c in [frame.index.name or "", *frame.columns])
    rows = []
    for key, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        cells = [f"<td>{_text(key)}</td>"]
        for column, value in zip(frame.columns, row, strict=True):
            missing = value is None or (isinstance(value, float) and not math.isfinite(value))
            shown = "–" if missing else formats.get(column, "{:,}" if isinstance(value, int | np.integer)
                                                    else "{}").format(value)
            cells.append(f"<td>{_text(shown)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _figure(fig, name: str) -> str:
    """A plotly figure as a div and its script; plotly's JS itself is in the page's head, once."""
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=f"chart-{name}",
                       config={"displaylogo": False, "responsive": True})


def _summary_html(audit: Audit, audit_dir: Path, stats: dict) -> str:
    manifest = audit.manifest
    dataset, scheme = manifest.get("dataset") or {}, manifest.get("scheme")
    scheme_points = scheme.get("points") if isinstance(scheme, dict) else None
    scheme_name = scheme.get("name") if isinstance(scheme, dict) else dataset.get("scheme")
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    issue_share = stats["issues"] / max(stats["labelled"], 1)
    face_share = stats["faces_with_issues"] / max(stats["faces"], 1)
    facts = [("Audit", audit_dir.name), ("Dataset", dataset.get("path", "–")), ("Format", dataset.get("format", "–")),
             ("Scheme", f"{scheme_name} ({len(scheme_points)} points)" if isinstance(scheme_points, list)
              else scheme_name or "–"),
             ("Model", model.get("path", "–")), ("Audited", manifest.get("created_at", "–")),
             ("By", f"landmark-auditor {manifest.get('tool_version', '?')}"),
             ("Faces", f"{stats['faces']:,}"), ("Points", f"{stats['points']:,} ({stats['labelled']:,} labelled)"),
             ("Label issues", f"{stats['issues']:,} ({issue_share:.1%} of the labelled points)"),
             ("Faces with issues", f"{stats['faces_with_issues']:,} ({face_share:.1%})")]
    if stats["swapped_faces"] is not None:
        facts.append(("Faces with swapped sides", f"{stats['swapped_faces']:,}"))
    facts.append(("Issue threshold", "not recorded" if stats["threshold"] is None else f"{stats['threshold']:.3g}"))
    block = manifest.get("calibration") if isinstance(manifest.get("calibration"), dict) else {}
    for key, name, fmt in (("target_precision", "Target precision", "{:.0%}"),
                           ("expected_precision", "Expected precision", "{:.1%}"),
                           ("expected_recall", "Expected recall", "{:.1%}"),
                           ("planted", "Errors planted to calibrate", "{:,.0f}")):
        if block.get("calibrated") and _number(block.get(key)) is not None:
            facts.append((name, fmt.format(_number(block[key]))))
    rows = "".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in facts)
    types = stats["by_type"].pivot_table(index="issue_type", columns="flagged", values="count", aggfunc="sum",
                                         fill_value=0).reindex(columns=[True, False], fill_value=0)
    types = types.reindex(stats["by_type"].issue_type.drop_duplicates())
    types.columns = ["flagged (label issues)", "not flagged"]
    return (f'<h2 id="summary">Summary</h2><table class="facts">{rows}</table>'
            f'<p class="note">{_text(calibration_text(manifest))}</p>'
            f"<h3>Points by issue type</h3>{_table(types.rename_axis('issue type').astype(np.int64))}")


def _charts_html(stats: dict, annotators: pd.DataFrame | None) -> str:
    figures = [("Label score", "scores", charts.score_histogram_figure(stats["score_edges"], stats["score_counts"],
                                                                      stats["threshold"])),
               ("Points by issue type", "by-type", charts.issue_type_figure(stats["by_type"])),
               ("Label issues by point group", "by-group", charts.group_figure(stats["by_group"]))]
    cells = "".join(f"<div><h3>{title}</h3>{_figure(fig, name)}</div>" for title, name, fig in figures)
    page = f'<h2 id="charts">Overview</h2><div class="charts">{cells}</div>'
    if annotators is not None:
        page += (f"<h3>Annotators</h3>{_figure(charts.annotator_ranking_figure(annotators), 'annotators')}"
                 '<p class="note">Each annotator\'s mean error against the consensus of the annotators (NME) with its '
                 "bootstrap 95 % interval, best first.</p>")
    return page


def _ced_html(nmes: dict[str, np.ndarray]) -> str:
    max_threshold = ced_max(nmes)
    table = pd.DataFrame({name: summary(values) for name, values in nmes.items()}).T.rename_axis("per-face NME")
    return (f'<h2 id="ced">Cumulative error distribution</h2>'
            '<p class="note">There is no ground truth here, so these curves do not measure accuracy: each is the '
            "cumulative distribution over faces of the mean distance between the human labels and another set of "
            "positions, over the face's normaliser (NME). <b>Proposals</b>: the position the audit proposes for "
            "every point (the semantic search's, the labels' shape's for gross errors, off-contour labels and "
            "duplicates, the model's for swapped sides); <b>corrected</b>: the labels with every flagged point's "
            "proposal accepted, i.e. how far accepting them all would move each face; <b>the model's "
            "predictions</b>: the positions the model finds on its own.</p>"
            f"{_figure(charts.ced_figure(nmes, max_threshold), 'ced')}"
            f"{_table(table, dict.fromkeys(table.columns, '{:.4f}'))}"
            '<p class="muted">nme = mean over faces; fr = fraction of faces above the threshold; auc = area under the '
            "curve up to it.</p>")


def _groups_html(points: pd.DataFrame) -> str:
    table = group_rates(points)
    return ('<h2 id="groups">Issue rate by point group</h2>'
            f"{_table(table, {'rate': '{:.2%}'})}"
            '<p class="muted">labelled: labelled points of the group, all faces; issues: those flagged as label '
            "issues, by issue type in the columns after the rate.</p>")


def _worst_html(audit: Audit, files: dict[str, Path | None], decisions: dict, proposed_xy: np.ndarray,
                worst: int) -> tuple[str, int]:
    points, images = audit.points, audit.images
    faces = worst_faces(points, worst)
    rows = np.flatnonzero(points.image_id.isin(faces.image_id).to_numpy())
    image_ids = points.image_id.to_numpy(dtype=object)
    by_face = {image_id: rows[at] for image_id, at in pd.Series(rows).groupby(image_ids[rows]).indices.items()}
    human_xy, point, issue = positions(points, "human"), points.point.to_numpy(), points.is_label_issue.to_numpy(bool)
    issue_type = points.issue_type.astype(str).to_numpy(dtype=object)
    image_of = images.set_index("image_id").image_path.astype(str)
    decided = decisions.get("decided_issues")
    cards = []
    for face in faces.itertuples(index=False):
        mine = by_face[face.image_id]
        mine = mine[np.argsort(point[mine], kind="stable")]
        flagged = issue[mine]
        image_path = image_of[face.image_id]
        jpeg, why = face_thumbnail(files.get(image_path), human_xy[mine], proposed_xy[mine], flagged)
        uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        kinds = issue_type[mine][flagged]
        counts = pd.Series(kinds).value_counts()
        kinds_text = ", ".join(f"{k} ×{v}" for k, v in counts.items()) or "no label issue"
        lines = [f"<b>{_text(face.image_id)}</b>", _text(image_path),
                 f"face score {face.face_score:.3g}" if np.isfinite(face.face_score) else "face score –",
                 f"{face.issues} label issue{'' if face.issues == 1 else 's'}: {_text(kinds_text)}"]
        if decided is not None:
            lines.append(f"{int(decided.get(face.image_id, 0))} of {face.issues} issues decided")
        if why:
            lines.append(f'<span class="muted">{_text(why)}</span>')
        cards.append(f'<div class="face"><img src="{uri}" alt="{_text(face.image_id)}">{"<br>".join(lines)}</div>')
    legend = (f'<span class="dot" style="background: rgb{HUMAN_RGB}"></span> human label &nbsp; '
              f'<span class="dot" style="background: rgb{PROPOSED_RGB}"></span> proposed position of a flagged point, '
              "joined to its label")
    return (f'<h2 id="worst">The {len(faces)} worst faces</h2>'
            '<p class="note">The faces of lowest face score (the lowest label score of their points), those with '
            f"most label issues first among equals. {legend}.</p>"
            f'<div class="faces">{"".join(cards)}</div>'), len(faces)


def _decisions_html(decisions: dict) -> str:
    head = '<h2 id="decisions">Decisions so far</h2>'
    if not decisions["present"]:
        return head + f"<p>No decision recorded yet (the audit has no {REVIEWS}).</p>"
    if decisions["error"]:
        return head + f"<p>The decisions could not be read: {_text(decisions['error'])}</p>"
    by, on_issues, total = decisions["by_decision"], decisions["issues_by_decision"], decisions["issues"]
    decided = sum(on_issues.values())
    table = pd.DataFrame({"all decided points": by, "of the audit's label issues": on_issues}).rename_axis(
        "decision").rename(index={"accept": "accepted", "reject": "rejected", "edit": "edited",
                                  "mirror": "mirrored (a swapped face)"})
    table.loc["total"] = table.sum()
    reviewers = decisions["reviewers"].rename("decided points").rename_axis("reviewer").to_frame()
    last = f", the latest at {_text(decisions['last'])}" if decisions["last"] else ""
    return (head + f"<p>{decided:,} of the audit's {total:,} label issues decided ({decided / max(total, 1):.1%}), "
            f"{total - decided:,} to go{last}.</p>{_table(table.astype(np.int64))}{_table(reviewers)}")


def render_report(audit: Audit, audit_dir: Path, files: dict[str, Path | None], decisions: dict, *,
                  worst: int = WORST) -> tuple[str, int]:
    """The report's HTML page and how many worst faces it shows; `files` maps each image_path to its file (or
    None), `decisions` is `decisions_summary`'s."""
    from plotly.offline import get_plotlyjs

    stats = overview_tables(audit.points, audit.images, audit.manifest)
    x, y, _ = proposals(audit.points)
    proposed_xy = np.stack([x, y], axis=1)
    worst_html, shown = _worst_html(audit, files, decisions, proposed_xy, worst)
    sections = [_summary_html(audit, audit_dir, stats), _charts_html(stats, load_annotators(audit_dir)),
                _ced_html(agreement_nmes(audit.points, audit.images, proposed_xy)), _groups_html(audit.points),
                worst_html, _decisions_html(decisions)]
    nav = " ".join(f'<a href="#{anchor}">{name}</a>' for anchor, name in (
        ("summary", "Summary"), ("charts", "Overview"), ("ced", "CED"), ("groups", "Point groups"),
        ("worst", "Worst faces"), ("decisions", "Decisions")))
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="landmark-auditor {_text(__version__)}">
<title>Audit report: {_text(audit_dir.name)}</title>
<style>{_CSS}</style>
<script type="text/javascript">window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<h1>Audit report: {_text(audit_dir.name)}</h1>
<p class="muted">Written by <code>auditor report</code> (landmark-auditor {_text(__version__)}) on {written}.</p>
<nav>{nav}</nav>
{"".join(sections)}
</body>
</html>
"""
    return page, shown
