"""Dataset strings (image ids, point names, reviewers, paths) made inert before the app shows them: they are data,
never markup."""

from __future__ import annotations

import re

from auditor.charts import plot_text as plot_text  # app.figures takes it from here

_MARKDOWN_PUNCTUATION = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")


def md_text(value: object) -> str:
    """A string for Streamlit markdown (labels, captions): every ASCII punctuation backslash-escaped (CommonMark), so
    it shows as written; Streamlit escapes HTML in markdown anyway (the app never allows HTML)."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))
