"""Draw 16 synthetic faces with their true (green dots) and human (red crosses) points: docs/synth_faces.png.

Run: .venv/bin/python docs/make_synth_figure.py
The faces are the first 16 of `sample_data/` (seed 2019), zoomed on the face; yellow lines join truth to human
where an error (gross, moderate, off-contour, swap) was planted.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from auditor.io.pts import parse_pts  # noqa: E402
from auditor.noise import HARMLESS_KINDS  # noqa: E402
from auditor.synth import generate  # noqa: E402

SEED, N, SIZE = 2019, 16, 256
OUT = Path(__file__).resolve().parent / "synth_faces.png"


def main() -> None:
    """Generate the faces in a temp folder, draw the 4x4 grid and save it beside this script."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root, n=N, seed=SEED, size=SIZE)
        noise = pd.read_csv(root / "truth" / "noise.csv")
        errors = noise[~noise["kind"].isin(HARMLESS_KINDS)]
        fig, axes = plt.subplots(4, 4, figsize=(16, 16), dpi=100)
        for ax, pts in zip(axes.flat, sorted((root / "faces").glob("*.pts")), strict=True):
            image = np.asarray(Image.open(pts.with_suffix(".jpg")).convert("RGB"))
            human, truth = parse_pts(pts), parse_pts(root / "truth" / pts.name)
            mine = errors[errors["image_id"] == pts.stem]
            ax.imshow(image)
            ax.plot(truth[:, 0], truth[:, 1], "o", color="lime", ms=3, mew=0)
            ax.plot(human[:, 0], human[:, 1], "x", color="red", ms=4, mew=1)
            for k in sorted(set(mine["point"])):
                ax.plot([truth[k, 0], human[k, 0]], [truth[k, 1], human[k, 1]], "-", color="yellow", lw=1.6)
            # zoom on the face (the whole head and some background stay in view) so the points are readable
            centre, half = truth.mean(0), 0.8 * (truth.max(0) - truth.min(0)).max()
            ax.set_xlim(max(centre[0] - half, -0.5), min(centre[0] + half, SIZE - 0.5))
            ax.set_ylim(min(centre[1] + half, SIZE - 0.5), max(centre[1] - half, -0.5))
            kinds = ", ".join(f"{n} {k}" for k, n in mine["kind"].value_counts().sort_index().items())
            ax.set_title(f"{pts.stem}: {kinds or 'no errors'}", fontsize=9)
            ax.axis("off")
        fig.suptitle("Synthetic faces: truth (green dots), human labels (red crosses), planted errors (yellow)",
                     fontsize=13)
        fig.tight_layout(rect=(0, 0, 1, 0.98))
        fig.savefig(OUT, pil_kwargs={"optimize": True})
        plt.close(fig)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
