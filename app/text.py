"""Dataset strings (image ids, point names, reviewers, paths) made inert before the app shows them: they are data,
never markup."""

from __future__ import annotations

import html
import re

_MARKDOWN_PUNCTUATION = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")


def plot_text(value: object) -> str:
    """A string for a plotly text or label, which reads a few HTML tags: escaped."""
    return html.escape(str(value))


def md_text(value: object) -> str:
    """A string for Streamlit markdown (labels, captions): every ASCII punctuation backslash-escaped (CommonMark), so
    it shows as written; Streamlit escapes HTML in markdown anyway (the app never allows HTML)."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", " ".join(str(value).split()))
