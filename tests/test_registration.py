"""Registration on the stock PyPI host, the bridge, subclasses and the FFI capsules."""

import numpy as np
import xarray as xr
import pytest
import xarray_sql
from xarray_sql.ds import XarrayDataFrame
from datafusion import ScalarUDF, SessionContext

import datafusion_autograd
from datafusion_autograd import AutogradContext, GradUDF, JvpUDF, VjpUDF, forwards_simplify, register


def test_the_stock_host_does_not_forward_simplify():
    # PyPI datafusion 54 drops ScalarUDF::simplify at the FFI boundary, so the
    # marker alone reaches execution, where it refuses to produce a value.
    ctx = SessionContext()
    assert forwards_simplify(ctx) is False
    with pytest.raises(Exception, match="did not call the function's simplify hook"):
        ctx.sql("SELECT grad(x, x) FROM (VALUES (1.0)) AS t(x)").collect()


def test_register_returns_the_context_and_is_idempotent():
    ctx = SessionContext()
    assert register(register(ctx)) is ctx
    assert ctx.sql("SELECT grad(x * x, x) AS d FROM (VALUES (1.5)) AS t(x)").to_pydict() == {"d": [3.0]}


def test_markers_are_datafusion_scalar_udfs():
    for udf, cls, name in [
        (datafusion_autograd.grad_udf, GradUDF, "grad"),
        (datafusion_autograd.jvp_udf, JvpUDF, "jvp"),
        (datafusion_autograd.vjp_udf, VjpUDF, "vjp"),
    ]:
        assert isinstance(udf, ScalarUDF)
        assert type(cls().__datafusion_scalar_udf__()).__name__ == "PyCapsule"
        # Registered without the bridge, the capsule's UDF is reachable by
        # name and, unsimplified, explains itself instead of computing.
        ctx = SessionContext()
        ctx.register_udf(ScalarUDF.from_pycapsule(cls()))
        args = "x, x" if name == "grad" else "x, x, 1.0"
        with pytest.raises(Exception, match=rf"{name}\(\) reached execution"):
            ctx.sql(f"SELECT {name}({args}) FROM (VALUES (1.0)) AS t(x)").collect()


def test_autograd_context():
    ctx = AutogradContext()
    assert isinstance(ctx, SessionContext)
    got = ctx.sql("SELECT grad(ln(x), x) AS d FROM (VALUES (4.0)) AS t(x)").to_pydict()
    assert got == {"d": [0.25]}


class WrappingContext(SessionContext):
    """A subclass whose ``sql`` returns its own result type."""

    class Result:
        def __init__(self, df):
            self.df = df

    def sql(self, query, *args, **kwargs):
        return self.Result(super().sql(query, *args, **kwargs))


def test_subclass_result_type_is_kept():
    ctx = register(WrappingContext())
    result = ctx.sql("SELECT grad(x * x, x) AS d FROM (VALUES (2.0)) AS t(x)")
    assert isinstance(result, WrappingContext.Result)
    assert result.df.to_pydict() == {"d": [4.0]}


def test_xarray_context_keeps_its_dataframe_type():
    lat = np.linspace(-60, 60, 5)
    u = np.cos(np.radians(lat))[None, :] * np.arange(1, 4)[:, None]
    v = np.sin(np.radians(lat))[None, :] * 2.0 + 0.5
    ds = xr.Dataset(
        {"u": (("time", "lat"), u), "v": (("time", "lat"), np.broadcast_to(v, u.shape).copy())},
        coords={"time": np.arange(3), "lat": lat},
    )
    ctx = register(xarray_sql.XarrayContext())
    ctx.from_dataset("wind", ds)
    result = ctx.sql("SELECT time, lat, grad(sqrt(u * u + v * v), u) AS dspeed FROM wind")
    assert isinstance(result, XarrayDataFrame)
    out = result.to_dataset()
    speed = np.sqrt(ds.u**2 + ds.v**2)
    xr.testing.assert_allclose(out.dspeed.transpose(*ds.u.dims), (ds.u / speed).rename("dspeed"))
