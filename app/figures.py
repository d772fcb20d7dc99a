"""The review page's figures: a face with its three sets of points, the zoom a curator clicks to place a point, and a
point's heatmap window beside the ideal Gaussian. Pure: tables and arrays in, plotly figures (the zoom: an image)
out.

Positions are image pixels (`xy_img`) or heatmap pixels (`xy_hm`), pixel centres on integers, y down.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image, ImageDraw

from app.text import plot_text

# (column prefix, legend name, marker), drawn in this order (the labels on top): distinct shapes so the three sets
# differ without colour too
POINT_SETS = (
    ("pred", "predicted", {"symbol": "diamond-open", "color": "#00b4ff", "size": 9, "line": {"width": 2}}),
    ("searched", "searched", {"symbol": "x", "color": "#ff7f0e", "size": 8}),
    ("human", "human", {"symbol": "circle", "color": "#2ca02c", "size": 7, "line": {"width": 1, "color": "white"}}),
)
# the search whose offset the score reads (`x_searched_broad`), drawn on the heatmap where it is not the proposal
BROAD_SEARCH = ("searched_broad", "searched, broad prior (scored)",
                {"symbol": "x-thin", "color": "#e377c2", "size": 8, "line": {"width": 3, "color": "#e377c2"}})
ARROW_COLOUR = "#ff7f0e"
SELECTED_COLOUR = "#d62728"


def _image_axes(box: tuple[float, float, float, float]) -> dict:
    """Layout of image-like plots: x right, y down, equal scale, the view `box` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    axis = {"showgrid": False, "zeroline": False, "constrain": "domain"}
    return {"xaxis": {**axis, "range": [x0, x1]}, "yaxis": {**axis, "range": [y1, y0], "scaleanchor": "x",
                                                              "scaleratio": 1}}


def _arrows(face: pd.DataFrame, colour: str, width: float, name: str, to: str = "searched") -> list[dict]:
    """Arrows from each human point to its position `to` (a column prefix), as two traces, far faster to draw than
    annotations: the shafts, one line broken by gaps, and the heads, one marker at each far end turned along its
    shaft (degrees clockwise from up, image y down)."""
    finite = face[np.isfinite(face[["x_human", "y_human", f"x_{to}", f"y_{to}"]]).all(axis=1)]
    n = len(finite)
    x, y = np.full(3 * n, np.nan), np.full(3 * n, np.nan)
    x[0::3], x[1::3] = finite.x_human, finite[f"x_{to}"]
    y[0::3], y[1::3] = finite.y_human, finite[f"y_{to}"]
    angle = np.degrees(np.arctan2(x[1::3] - x[0::3], y[0::3] - y[1::3]))
    shafts = {"type": "scatter", "x": x, "y": y, "mode": "lines", "name": name, "legendgroup": name,
              "hoverinfo": "skip", "line": {"color": colour, "width": width}}
    heads = {"type": "scatter", "x": x[1::3], "y": y[1::3], "mode": "markers", "name": name, "legendgroup": name,
             "showlegend": False, "hoverinfo": "skip",
             "marker": {"symbol": "arrow", "angleref": "up", "angle": angle, "size": 6.0 + 2 * width,
                        "color": colour}}
    return [shafts, heads]


def face_figure(face: pd.DataFrame, selected: int, *, image_uri: str | None, image_origin: tuple[int, int] = (0, 0),
                view: tuple[float, float, float, float], height: int = 480,
                arrows: tuple[str, str] = ("searched", "human → searched")) -> go.Figure:
    """One face: its image, human / searched / predicted points, arrows human -> searched, the point `selected` ringed.

    `face` has one row per point (x_human, y_human, x_searched, ... of points.parquet); `image_uri` is the image (or
    a crop of it whose top-left pixel is `image_origin`) as a data URI, None to draw the points alone; `view` is the
    visible box (x0, y0, x1, y1) in image pixels: points outside it are left out; `arrows` the column prefix the
    arrows point to (e.g. `fix`, with x_fix, y_fix in `face`) and their legend name. Its backgrounds are clear, for
    it is drawn without Streamlit's theme (`theme=None`), which costs the browser about 50 ms a redraw.
    """
    x0, y0, x1, y1 = view
    chosen = (face.point == selected).to_numpy()
    face = face[face.x_human.between(x0, x1).to_numpy() & face.y_human.between(y0, y1).to_numpy() | chosen]
    chosen = (face.point == selected).to_numpy()
    names = [plot_text(f"{p} {n}") for p, n in zip(face.point, face.point_name, strict=True)]
    data = [] if image_uri is None else [{"type": "image", "source": image_uri, "x0": image_origin[0],
                                          "y0": image_origin[1], "hoverinfo": "skip"}]
    data += [{"type": "scatter", "x": face[f"x_{prefix}"].to_numpy(), "y": face[f"y_{prefix}"].to_numpy(),
              "mode": "markers", "name": name, "marker": marker, "text": names,
              "hovertemplate": "%{text}<br>(%{x:.1f}, %{y:.1f})"} for prefix, name, marker in POINT_SETS]
    data += [*_arrows(face[~chosen], ARROW_COLOUR, 1.0, arrows[1], arrows[0]),
             *_arrows(face[chosen], SELECTED_COLOUR, 2.5, f"selected: {arrows[1]}", arrows[0]),
             {"type": "scatter", "x": face.x_human[chosen].to_numpy(), "y": face.y_human[chosen].to_numpy(),
              "mode": "markers", "name": "selected", "hoverinfo": "skip",
              "marker": {"symbol": "circle-open", "size": 18, "color": SELECTED_COLOUR, "line": {"width": 3}}}]
    layout = {**_image_axes(view), "height": height, "margin": {"l": 0, "r": 0, "t": 10, "b": 0},
              "legend": {"orientation": "h", "y": -0.07, "yanchor": "top"}, "paper_bgcolor": "rgba(0,0,0,0)",
              "plot_bgcolor": "rgba(0,0,0,0)"}
    return go.Figure(data=data, layout=layout)


def zoom_box(xy_img: tuple[float, float], half: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The integer crop (left, top, right, bottom; right and bottom excluded) of side about 2 `half` around a point,
    kept inside an image of `size` (width, height)."""
    width, height = size
    x, y = xy_img
    left = int(np.clip(round(x - half), 0, max(width - 1, 0)))
    top = int(np.clip(round(y - half), 0, max(height - 1, 0)))
    right = int(np.clip(round(x + half) + 1, left + 1, width))
    bottom = int(np.clip(round(y + half) + 1, top + 1, height))
    return left, top, right, bottom


def zoom_edges(box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """The image-pixel edges (x0, y0, x1, y1) of a crop `box` (`zoom_box`): pixel centres on integers."""
    return box[0] - 0.5, box[1] - 0.5, box[2] - 0.5, box[3] - 0.5


def zoom_to_image(uv: tuple[float, float], edges: tuple[float, float, float, float],
                  shown: tuple[float, float]) -> tuple[float, float]:
    """The image position (x, y) of the display pixel `uv` (u right, v down; its centre) of a zoom with image-pixel
    `edges` shown `shown` (width, height) display pixels large."""
    x0, y0, x1, y1 = edges
    return x0 + (uv[0] + 0.5) / shown[0] * (x1 - x0), y0 + (uv[1] + 0.5) / shown[1] * (y1 - y0)


# the zoom's marks: (outline colour, radius in display px, shape)
ZOOM_MARKS = {"label": ("#2ca02c", 3, "dot"), "selected": ("#2ca02c", 9, "ring"), "proposal": (ARROW_COLOUR, 7, "x"),
              "placed": (SELECTED_COLOUR, 11, "plus")}


def zoom_image(pixels: np.ndarray | None, edges: tuple[float, float, float, float],
               marks: list[tuple[str, np.ndarray]], *, width: int) -> Image.Image:
    """The zoom a curator clicks: the crop `pixels` (H, W, 3) uint8 spanning the image-pixel `edges` (x0, y0, x1,
    y1), or a grey field where there is no image, enlarged to `width` display px (each image pixel a block), with
    `marks`: (kind of ZOOM_MARKS, xy_img (2,)), drawn in order; marks outside the zoom are left out."""
    x0, y0, x1, y1 = edges
    height = max(1, round(width * (y1 - y0) / (x1 - x0)))
    image = (Image.new("RGB", (width, height), (96, 96, 96)) if pixels is None
             else Image.fromarray(pixels).resize((width, height), Image.Resampling.NEAREST))
    draw = ImageDraw.Draw(image)
    for kind, xy in marks:
        colour, r, shape = ZOOM_MARKS[kind]
        if not np.isfinite(xy).all():
            continue
        u, v = (xy[0] - x0) / (x1 - x0) * width, (xy[1] - y0) / (y1 - y0) * height
        if shape == "dot":
            draw.ellipse((u - r, v - r, u + r, v + r), fill=colour)
        elif shape == "ring":
            draw.ellipse((u - r, v - r, u + r, v + r), outline=colour, width=2)
        elif shape == "x":
            draw.line((u - r, v - r, u + r, v + r), fill=colour, width=2)
            draw.line((u - r, v + r, u + r, v - r), fill=colour, width=2)
        else:
            draw.line((u - r, v, u + r, v), fill=colour, width=2)
            draw.line((u, v - r, u, v + r), fill=colour, width=2)
    return image


def ideal_window(side: int, centre_xy: tuple[float, float], sigma: float, peak: float = 1.0) -> np.ndarray:
    """(W, W) the ideal heatmap: a Gaussian of `sigma` and height `peak` centred at `centre_xy` (window pixels)."""
    r = np.arange(side, dtype=np.float64)
    gx = np.exp(-((r - centre_xy[0]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((r - centre_xy[1]) ** 2) / (2 * sigma**2))
    return peak * gy[:, None] * gx[None, :]


def heatmap_figure(window: np.ndarray, origin_xy_hm: np.ndarray, marks_xy_hm: dict[str, np.ndarray], *,
                   anisotropy: float, angle: float, height: int = 340) -> go.Figure:
    """A point's heatmap window (W, W) in heatmap pixels, with the human / searched / predicted positions (2,),
    the broad search's (`searched_broad`) where it is more than 0.05 px from the searched one, and the principal
    axis through the label, its half-length W/2 times the anisotropy (a round blob shows none)."""
    side = window.shape[-1]
    xs, ys = origin_xy_hm[0] + np.arange(side), origin_xy_hm[1] + np.arange(side)
    data = [{"type": "heatmap", "z": window, "x": xs, "y": ys, "colorscale": "Viridis", "colorbar": {"thickness": 10},
             "hovertemplate": "(%{x}, %{y}): %{z:.3f}<extra></extra>"}]
    broad, searched = marks_xy_hm.get(BROAD_SEARCH[0]), marks_xy_hm.get("searched")
    apart = bool(broad is not None and searched is not None and np.isfinite(broad).all() and np.isfinite(searched).all()
             and float(np.linalg.norm(broad - searched)) > 0.05)
    for prefix, name, marker in ((BROAD_SEARCH,) if apart else ()) + POINT_SETS:
        xy = marks_xy_hm.get(prefix)
        if xy is not None and np.isfinite(xy).all():
            data.append({"type": "scatter", "x": [xy[0]], "y": [xy[1]], "mode": "markers", "name": name,
                         "marker": {**marker, "size": 12}})
    label = marks_xy_hm.get("human")
    if label is not None and np.isfinite(label).all() and np.isfinite(anisotropy) and np.isfinite(angle):
        half = side / 2 * anisotropy * np.array([np.cos(angle), np.sin(angle)])
        data.append({"type": "scatter", "x": [label[0] - half[0], label[0] + half[0]],
                     "y": [label[1] - half[1], label[1] + half[1]], "mode": "lines", "name": "principal axis",
                     "line": {"color": SELECTED_COLOUR, "dash": "dash", "width": 2}})
    layout = {**_image_axes((xs[0] - 0.5, ys[0] - 0.5, xs[-1] + 0.5, ys[-1] + 0.5)), "height": height,
              "margin": {"l": 0, "r": 0, "t": 10, "b": 0}, "legend": {"orientation": "h", "y": -0.05, "yanchor": "top"}}
    return go.Figure(data=data, layout=layout)


def surface_figure(window: np.ndarray, ideal: np.ndarray, origin_xy_hm: np.ndarray, *, sigma: float,
                   height: int = 360) -> go.Figure:
    """The heatmap window (W, W) as a 3-D surface beside the ideal Gaussian (W, W), on one height scale."""
    side = window.shape[-1]
    xs, ys = origin_xy_hm[0] + np.arange(side), origin_xy_hm[1] + np.arange(side)
    top = float(max(np.nanmax(window), np.nanmax(ideal), 1e-6))
    data = [{"type": "surface", "z": z, "x": xs, "y": ys, "colorscale": "Viridis", "cmin": 0, "cmax": top,
             "showscale": False, "scene": scene} for z, scene in ((window, "scene"), (ideal, "scene2"))]
    scene = {"zaxis": {"range": [0, top], "title": {"text": ""}}, "xaxis": {"title": {"text": "x"}},
             "yaxis": {"title": {"text": "y"}, "autorange": "reversed"}, "aspectmode": "cube",
             "camera": {"eye": {"x": 1.4, "y": -1.4, "z": 1.0}}}
    titles = [{"text": text, "x": x, "y": 1.0, "xref": "paper", "yref": "paper", "xanchor": "center",
               "yanchor": "bottom", "showarrow": False, "font": {"size": 14}}
              for text, x in (("heatmap", 0.245), (f"ideal Gaussian, σ = {sigma:g}", 0.755))]
    layout = {"scene": {**scene, "domain": {"x": [0.0, 0.49]}}, "scene2": {**scene, "domain": {"x": [0.51, 1.0]}},
              "annotations": titles, "height": height, "margin": {"l": 0, "r": 0, "t": 30, "b": 0}}
    return go.Figure(data=data, layout=layout)
