import builtins
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from audit_fixture import assert_one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.errors import InputError
from auditor.query import MAX_DEPTH, MAX_LENGTH, evaluate_query

NUMBERS = ("label_score", "peak", "point", "face")
TEXTS = ("issue_type", "image_id")
BOOLS = ("is_label_issue", "is_contour")


def random_points(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A points-like frame: float64 with NaN, float32, integers, bools, text with missing values."""
    rng = np.random.default_rng(seed)
    score = rng.integers(0, 100, n) / 100
    score[rng.uniform(size=n) < 0.15] = np.nan
    issue = rng.choice(["gross_error", "off_contour", "low_confidence", "", None], n).astype(object)
    return pd.DataFrame({
        "label_score": score, "peak": (rng.integers(0, 21, n) / 20).astype(np.float32),
        "point": rng.integers(0, 68, n).astype(np.int16), "face": rng.integers(-3, 10, n),
        "is_label_issue": rng.uniform(size=n) < 0.3, "is_contour": rng.uniform(size=n) < 0.5,
        "issue_type": pd.Series(issue, dtype="str"), "image_id": [f"Face_{i % 17:04d}" for i in range(n)],
    })


BENIGN = [
    "label_score < 0.2", "label_score >= 0.5", "label_score == 0.5", "label_score != 0.5", "peak <= 0.35",
    "peak == 0.35", "point == 3", "point != 3", "-point < -60", "face > -2", "0.1 < label_score <= 0.5",
    "3 <= point < 10 <= 60",
    "issue_type == 'gross_error'", "issue_type != 'gross_error'", "issue_type in ['gross_error', 'off_contour']",
    "issue_type not in ['gross_error', '']", "point in [1, 2, 3]", "face in (-1, -2)", "image_id > 'Face_0010'",
    "issue_type == 'gross_error' and label_score < 0.2", "issue_type == 'low_confidence' or label_score > 0.9",
    "not is_label_issue", "not (label_score < 0.3)", "(label_score < 0.3) & is_contour", "~is_contour | is_label_issue",
    "is_label_issue and not is_contour or point == 0", "image_id.str.contains('_001')",
    "issue_type.str.startswith('gross')", "issue_type.str.endswith('contour')", "image_id.str.lower() == 'face_0003'",
    "issue_type.str.upper().str.contains('ERROR')", "label_score.isna()", "issue_type.notna() & (point > 30)",
    "label_score * 2 + 1 > 1.5", "point // 4 % 3 == 1", "point / 2 - face ** 2 >= 3", "abs(face - 4) <= 2",
    "abs(label_score - peak) < 0.1", "label_score > peak", "+label_score < 0.5 - 0.25",
]


def pandas_mask(frame: pd.DataFrame, expression: str) -> np.ndarray:
    """The naive reference: the rows pandas' own `DataFrame.query` selects."""
    return frame.index.isin(frame.query(expression).index)


def refuse_evaluators(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make Python's and pandas' evaluators fail, to show that the query never reaches them."""
    def refuse(*args, **kwargs):
        raise AssertionError("an evaluator was called")

    for owner, name in ((builtins, "eval"), (builtins, "exec"), (pd, "eval"), (pd.DataFrame, "eval"),
                        (pd.DataFrame, "query")):
        monkeypatch.setattr(owner, name, refuse)


@pytest.mark.parametrize("expression", BENIGN)
def test_matches_pandas_query(expression, monkeypatch):
    frame = random_points()
    expected = pandas_mask(frame, expression)
    with monkeypatch.context() as m:
        refuse_evaluators(m)
        mask = evaluate_query(frame, expression)
    assert mask.dtype == bool and mask.index.equals(frame.index)
    np.testing.assert_array_equal(mask.to_numpy(), expected)
    assert 0 < mask.sum() < len(frame) or expression in ("point == 3", "face in (-1, -2)")


def test_nan_like_pandas_missing_is_not_selected():
    frame = pd.DataFrame({"x": [0.5, np.nan], "t": pd.Series(["a", None], dtype="str")})
    assert evaluate_query(frame, "x < 1").tolist() == [True, False]
    assert evaluate_query(frame, "x != 1").tolist() == [True, True]  # NaN differs from everything, as in pandas
    assert evaluate_query(frame, "t not in ['a']").tolist() == [False, True]
    assert evaluate_query(frame, "t.str.contains('a')").tolist() == [True, False]
    assert evaluate_query(frame, "x.isna()").tolist() == [False, True]
    nullable = pd.DataFrame({"b": pd.array([True, None], dtype="boolean")})
    assert evaluate_query(nullable, "b").tolist() == [True, False]


def test_parser_warnings_stay_quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "1or" makes the parser warn on stderr, a second line under the CLI's error
        assert evaluate_query(random_points(), "label_score < 1or is_contour").any()


def test_documented_differences_from_pandas():
    frame = random_points()
    # contains is literal: pandas' query reads 'Face_001.' as a regular expression
    assert not evaluate_query(frame, "image_id.str.contains('Face_001.')").any()
    assert pandas_mask(frame, "image_id.str.contains('Face_001.')").any()
    # a constant condition selects every row or none (pandas cannot select with a scalar)
    assert evaluate_query(frame, "True").all() and not evaluate_query(frame, "1 > 2").any()
    # logic needs true/false operands (pandas does bitwise arithmetic on integers); lists only after in
    for expression, fragment in (("point & 2", "'&' needs true/false"), ("label_score < 0.3 & is_contour", "'&'"),
                                 ("point == [1, 2]", "[1, 2]"), ("not point", "'not' needs true/false")):
        with pytest.raises(InputError, match=fragment):
            evaluate_query(frame, expression)


@pytest.mark.parametrize(("expression", "fragment"), [
    ("label_score", "expected a condition"), ("label_score + 1", "expected a condition"),
    ("issue_type", "expected a condition"), ("", "empty"), ("   ", "empty"), ("issue_type < 3", "cannot order text"),
    ("3 > image_id", "cannot order text"), ("issue_type + 1 > 0", "'+' needs numbers"), ("abs(image_id) > 1", "abs"),
    ("label_score.str.contains('a')", "needs a text column"), ("point ** -1 > 0", "cannot evaluate"),
    ("1 / 0 > 0", "division by zero"), ("9 ** 9 ** 9 > 1", "too large"),
    ("lable_score < 1", "did you mean label_score"), ("nope < 1", "unknown column 'nope'"),
    ("label_score <", "syntax error at column 14"),
    ("image_id.str.contains(issue_type)", "must be a text literal"), ("image_id.str.lower('a') == 'b'", "no argument"),
    ("image_id.str.contains('a', regex=True)", "'regex=True'"), ("label_score.isna", "'.isna' is only allowed"),
    ("label_score is None", "'is'"), ("point ^ 1 > 0", "'^'"), ("point @ point", "'@'"), ("None == point", "'None'"),
    ("issue_type in issue_type", "needs a list of literals"), ("point in [face]", "literals only"),
    ("point in [1] == True", "cannot be followed"), ("f'{point}' == '1'", "f'{point}'"), ("(y := 1) > 0", "y := 1"),
    ("{1: 2}", "{1: 2}"), ("(1, 2) == (1, 2)", "(1, 2)"), ("abs(*point) > 0", "*point"), ("1j == point", "1j"),
    ("point > 1 and\n@x", "syntax error"), ("label_score < 0.2\x00", "null bytes"),
])
def test_bad_queries_are_one_line_input_errors(expression, fragment):
    with pytest.raises(InputError, match="invalid query") as e:
        evaluate_query(random_points(), expression, field="--reject-where")
    message = str(e.value)
    assert fragment in message and "\n" not in message and message.startswith("[--reject-where]: invalid query ")


HOSTILE = [
    ("label_score.__class__.__init__.__globals__['os'].system('touch SENTINEL')", "'__class__' is not allowed"),
    ("@pd.io.common.os.system('touch SENTINEL')", "syntax error at column 1"),
    ("@pd.read_pickle('x')", "syntax error at column 1"),
    ("__import__('os').system('touch SENTINEL')", "'__import__' is not allowed"),
    ("label_score.to_pickle('SENTINEL')", "'to_pickle' is not allowed"),
    ("[c for c in ()]", "'[c for c in ()]' is not allowed"),
    ("(lambda: 1)()", "'lambda: 1' is not allowed"),
    ("issue_type.str.__class__", "'__class__' is not allowed"),
    ("'a'.join(x)", "'join' is not allowed"),
    (("label_score < 0.2" + " or label_score < 0.2" * 4761).ljust(100_000), "100000 characters"),
    ("(" * 10_000 + "label_score < 0.2" + ")" * 10_000, f"at most {MAX_LENGTH} are allowed"),
    ("(" * 500 + "label_score < 0.2" + ")" * 500, "too many nested parentheses"),
    ("-" * 1000 + "label_score < 0.2", f"nested more than {MAX_DEPTH} levels deep"),
    ("points['x']", "\"['x']\" is not allowed"),
    ("x if y else z", "'x if y else z' is not allowed"),
]


@pytest.mark.parametrize(("expression", "fragment"), HOSTILE)
def test_hostile_queries_run_nothing(expression, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refuse_evaluators(monkeypatch)
    with pytest.raises(InputError) as e:
        evaluate_query(random_points(), expression, field="--accept-where")
    message = str(e.value)
    assert fragment in message and "\n" not in message and len(message) < 500
    assert not list(tmp_path.iterdir())


ATOMS = [*NUMBERS, *TEXTS, *BOOLS, "1", "-2", "0.5", "'gross_error'", "'Face'", "True", "nope", "abs(face)",
         "issue_type.str.lower()", "image_id.str.contains('1')", "label_score.isna()", "[1, 'a']"]
BINARY = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "and", "or", "&", "|", "+", "-", "*", "/", "//", "%", "**"]


def expressions() -> st.SearchStrategy[str]:
    """Well- and ill-typed expressions of the grammar (and a few outside it), at most a few levels deep."""
    def grow(inner):
        return st.one_of(
            st.tuples(inner, st.sampled_from(BINARY), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            st.tuples(st.sampled_from(["not ", "~", "-", "+"]), inner).map("".join),
            inner.map(lambda e: f"({e}).isna()"), inner.map(lambda e: f"({e}).str.startswith('g')"),
            inner.map(lambda e: f"abs({e})"),
        )
    return st.recursive(st.sampled_from(ATOMS), grow, max_leaves=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expression=expressions())
def test_random_expressions_raise_only_input_errors(expression):
    frame = random_points(40)
    try:
        mask = evaluate_query(frame, expression)
    except InputError as e:
        assert "\n" not in str(e)
        return
    assert mask.dtype == bool and len(mask) == len(frame)
    try:
        expected = pandas_mask(frame, expression)
    except Exception:  # pandas refuses some of what we accept: scalar conditions, ints divided by zero, ...
        return
    np.testing.assert_array_equal(mask.to_numpy(), expected, err_msg=expression)


@settings(max_examples=300, deadline=None)
@given(expression=st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
       | st.text(alphabet="()[]'\"._@:=+-*/%<>!&|~ ,0123456789abcdeilnorstuxy_", max_size=60))
def test_arbitrary_text_raises_only_input_errors(expression):
    try:
        mask = evaluate_query(random_points(20), expression)
    except InputError as e:
        assert "\n" not in str(e)
    else:
        assert mask.dtype == bool and len(mask) == 20


def review_cli(audit, cwd, *args: str) -> subprocess.CompletedProcess:
    """`auditor review AUDIT ...` in a subprocess run in `cwd`, where a hostile query would leave its files."""
    return subprocess.run([sys.executable, "-m", "auditor.cli", "review", str(audit), *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize(("expression", "fragment"), HOSTILE, ids=[f"hostile{i}" for i in range(len(HOSTILE))])
def test_cli_refuses_hostile_queries(expression, fragment, audit, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for option, extra in (("--accept-where", "--dry-run"), ("--reject-where", "--yes")):
        r = review_cli(audit, work, option, expression, extra)
        assert_one_line_error(r, f"[{option}]: invalid query", fragment)
    assert not list(work.iterdir()) and not (audit / "reviews.sqlite").exists()


def test_cli_benign_query_still_works(audit, tmp_path):
    r = review_cli(audit, tmp_path, "--accept-where", "issue_type == 'low_confidence' and label_score < 0.2",
                   "--dry-run")
    assert r.returncode == 0 and " points match" in r.stdout and not r.stderr, r.stderr
    assert int(r.stdout.split()[0]) > 0 and not (audit / "reviews.sqlite").exists()
