"""The markers' documentation as Python sees it.

Stock ``datafusion`` loads the markers through datafusion-ffi's
``FFI_ScalarUDF``, which carries no documentation: its ``information_schema``
lists them by name only, and ``SHOW FUNCTIONS`` (built from the parameters,
which come from spelled-out argument types) not at all. The Python docs come
from the same Rust text as DataFusion's documentation of the native markers.
"""

from __future__ import annotations

import numpy as np
import pytest
from datafusion import SessionConfig, SessionContext

import datafusion_autograd as ag
from datafusion_autograd import _native

MARKERS = {"grad": ag.GradUDF, "jvp": ag.JvpUDF, "vjp": ag.VjpUDF}


@pytest.fixture
def documented() -> SessionContext:
    """A registered context that answers ``information_schema`` queries."""
    return ag.register(SessionContext(SessionConfig().with_information_schema(True)))


def test_information_schema_lists_the_markers_without_documentation(documented: SessionContext) -> None:
    rows = documented.sql(
        "SELECT routine_name, routine_type, function_type, is_deterministic, data_type, "
        "description, syntax_example FROM information_schema.routines "
        "WHERE routine_name IN ('grad', 'jvp', 'vjp') ORDER BY routine_name"
    ).to_pylist()
    assert rows == [
        {
            "routine_name": name,
            "routine_type": "FUNCTION",
            "function_type": "SCALAR",
            "is_deterministic": True,
            "data_type": None,
            "description": None,
            "syntax_example": None,
        }
        for name in MARKERS
    ]


def test_show_functions_omits_markers_that_came_through_ffi(documented: SessionContext) -> None:
    # A built-in with spelled-out argument types is listed with its documentation ...
    sin = documented.sql("SHOW FUNCTIONS LIKE 'sin'").to_pylist()
    assert {row["description"] for row in sin} == {"Returns the sine of a number."}
    # ... a foreign UDF, whose signature datafusion-ffi makes user-defined, is not.
    for name in MARKERS:
        assert documented.sql(f"SHOW FUNCTIONS LIKE '{name}'").to_pylist() == []
        parameters = documented.sql(
            f"SELECT * FROM information_schema.parameters WHERE specific_name = '{name}'"
        ).to_pylist()
        assert parameters == []


@pytest.mark.parametrize("name", MARKERS)
def test_python_docs_come_from_the_rust_documentation(name: str) -> None:
    doc = _native.documentation(name)
    assert doc["description"] == _native.summary(name)
    assert MARKERS[name].__doc__ == f"`{doc['syntax']}`: {doc['description']}"
    assert getattr(ag, name).__doc__.startswith(doc["description"] + "\n")
    arguments = [argument for argument, _ in doc["arguments"]]
    assert doc["syntax"] == f"{name}({', '.join(arguments)})"
    assert doc["sql_example"].startswith("```sql\nSELECT ") and name + "(" in doc["sql_example"]


def test_documentation_of_an_unknown_marker_is_an_error() -> None:
    with pytest.raises(ag.AutogradError, match="unknown marker `hess`; expected grad, jvp or vjp"):
        _native.documentation("hess")


@pytest.mark.parametrize("name", MARKERS)
def test_the_documented_example_runs(name: str) -> None:
    """The example DataFusion documents for each marker, over a table it reads."""
    samples = {
        "x": np.array([0.5, 2.0]),
        "a": np.array([1.5, -0.5]),
        "da": np.array([2.0, 1.0]),
        "w": np.array([1.25, 1.25]),
        "y": np.array([0.5, 3.0]),
    }
    ctx = ag.register(SessionContext())
    ctx.from_pydict({k: v.tolist() for k, v in samples.items()}, name="samples")
    example = _native.documentation(name)["sql_example"].removeprefix("```sql\n").removesuffix("\n```")
    values = list(ctx.sql(example).to_pydict().values())[-1]
    x, a, da, w, y = samples.values()
    expected = {
        "grad": np.cos(x) * x + np.sin(x),  # d/dx sin(x)·x
        "jvp": x * np.exp(a * x) * da,  # d/da exp(a·x), along da
        "vjp": [np.sum(0.5 * 2.0 * (w * x - y) * x)],  # d/dw (w·x − y)², weighted 0.5
    }[name]
    np.testing.assert_allclose(values, expected, rtol=1e-12)
