"""The export page: the reviewed corrections, written by `auditor.export` into a temporary folder and offered for
download (the audit directory is left as it is)."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from app.audit_view import AuditView
from auditor.errors import InputError
from auditor.export import CONSENSUS_COLUMNS, ONLY, TABLE_FORMATS, USE, export_corrections

RESULT = "export_result"
MIME = {"csv": "text/csv", "fiftyone": "application/json", "labelstudio": "application/json"}
ONLY_HELP = {"accepted": "points accepted or edited", "issues": "points flagged as label issues, decided or not",
             "all": "every labelled point"}
USE_HELP = {"proposals": "the decisions, else the audit's proposals",
            "consensus": "the annotators' consensus, the same for every label set of a face"}


def run_export(audit_dir: Path, *, only: str, format: str, use: str = "proposals") -> tuple[bytes, dict]:
    """The exported table's bytes and the export's summary (rows, faces), through a temporary file."""
    suffix = ".csv" if format == "csv" else ".json"
    with tempfile.TemporaryDirectory(prefix="auditor-export-") as tmp:
        out = Path(tmp) / f"corrections{suffix}"
        summary = export_corrections(audit_dir, out=out, only=only, format=format, use=use)
        return out.read_bytes(), {"rows": summary["rows"], "faces": summary["faces"]}


def export_ui(view: AuditView) -> None:
    """Draw the export page."""
    st.header("Export")
    only = st.radio("Points", ONLY, key="export_only", horizontal=True, captions=[ONLY_HELP[o] for o in ONLY])
    fmt = st.radio("Format", TABLE_FORMATS, key="export_format", horizontal=True,
                   captions=["one row per point", "FiftyOne samples (JSON)", "Label Studio tasks (JSON)"])
    use = "proposals"
    if set(CONSENSUS_COLUMNS) <= set(view.points.columns):  # a dataset that names its annotators
        use = st.radio("Corrected positions", USE, key="export_use", horizontal=True,
                       captions=[USE_HELP[u] for u in USE])
    if st.button("Export", type="primary", key="export"):
        try:
            with st.spinner("Exporting…"):
                data, summary = run_export(view.path, only=only, format=fmt, use=use)
        except InputError as e:
            st.session_state.pop(RESULT, None)
            st.error("The export failed:")
            st.code(str(e), language=None)
        else:
            st.session_state[RESULT] = {"audit": str(view.path), "data": data, "only": only, "format": fmt, **summary}
    result = st.session_state.get(RESULT)
    if result is None or result["audit"] != str(view.path):
        return
    st.success(f"Exported {result['rows']:,} points of {result['faces']:,} faces ({result['only']}, "
               f"{result['format']}).")
    name = f"{view.path.name}-corrections-{result['only']}.{'csv' if result['format'] == 'csv' else 'json'}"
    st.download_button("Download", data=result["data"], file_name=name, mime=MIME[result["format"]],
                       on_click="ignore", key="download", icon=":material/download:")
    if result["format"] == "csv":
        st.dataframe(pd.read_csv(io.BytesIO(result["data"]), nrows=200), hide_index=True, placeholder="")
        st.caption("The first 200 rows.")
