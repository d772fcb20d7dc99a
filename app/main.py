"""The review app of an audit directory.

    streamlit run app/main.py [-- --audit DIR]

DIR defaults to `$AUDITOR_AUDIT`, else `sample_data/audit` of this repository; another audit can be opened from the
sidebar. Pages: Overview, Annotators (when the dataset names them), Review (deep links: `?image=ID&point=K`, or
`point=face` for the whole face), Export.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import streamlit as st

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `streamlit run` puts app/ on the path, not the folder that holds the `app` package
    sys.path.insert(0, str(REPO))

from app.annotators import annotators_ui  # noqa: E402
from app.audit_view import open_audit  # noqa: E402
from app.export import export_ui  # noqa: E402
from app.overview import overview_ui  # noqa: E402
from app.review import review_ui  # noqa: E402
from auditor.errors import InputError  # noqa: E402
from auditor.review import default_reviewer  # noqa: E402

AUDIT_ENV = "AUDITOR_AUDIT"
DEFAULT_AUDIT = REPO / "sample_data" / "audit"
PAGES = ("Overview", "Annotators", "Review", "Export")


def default_audit(argv: list[str]) -> str:
    """The audit to open first: `--audit DIR` after `--` of `streamlit run`, else $AUDITOR_AUDIT, else the sample."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--audit")
    known, _ = parser.parse_known_args(argv)
    return known.audit or os.environ.get(AUDIT_ENV) or str(DEFAULT_AUDIT)


def sidebar_ui() -> tuple[str, str, str]:
    """Draw the sidebar; returns the audit directory, the page and the reviewer's name."""
    st.sidebar.title("Landmark auditor")
    if "image" in st.query_params and "page" not in st.query_params and "page" not in st.session_state:
        st.session_state.page = "Review"  # a deep link to an item opens the review page
    page = st.sidebar.radio("Page", PAGES, key="page", bind="query-params")
    audit_dir = st.sidebar.text_input("Audit directory", value=default_audit(sys.argv[1:]), key="audit_dir")
    reviewer = st.sidebar.text_input("Reviewer", value=default_reviewer(), key="reviewer")
    return audit_dir.strip(), page, reviewer.strip()


def main() -> None:
    st.set_page_config(page_title="Landmark auditor", layout="wide")
    audit_dir, page, reviewer = sidebar_ui()
    try:
        view = open_audit(audit_dir)
    except InputError as e:
        st.error("Cannot open this audit directory:")
        st.code(str(e), language=None)
        return
    st.sidebar.caption(f"{len(view.images):,} faces, {len(view.points):,} points")
    if page == "Review":
        review_ui(view, reviewer)
    elif page == "Export":
        export_ui(view)
    elif page == "Annotators":
        annotators_ui(view)
    else:
        overview_ui(view)


main()
