"""xarray in and out: Datasets registered with ``XarrayContext``, derivatives back as Datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from xarray_sql import XarrayContext

import datafusion_autograd
from benchmarks import climate


@pytest.fixture
def field() -> xr.Dataset:
    """Two positive variables on a lat × lon grid, latitude descending, plus a non-dimension coordinate."""
    lat = np.array([60.0, 30.0, 0.0, -30.0, -60.0])
    lon = np.arange(0.0, 360.0, 45.0)
    rng = np.random.default_rng(7)
    shape = (lat.size, lon.size)
    return xr.Dataset(
        {
            "a": (("lat", "lon"), rng.uniform(0.5, 2.0, shape), {"units": "m"}),
            "b": (("lat", "lon"), rng.uniform(0.5, 2.0, shape), {"units": "s"}),
        },
        coords={
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
            "coslat": ("lat", np.cos(np.deg2rad(lat))),
        },
    )


@pytest.fixture
def xctx(field: xr.Dataset) -> XarrayContext:
    ctx = datafusion_autograd.register(XarrayContext())
    # Several partitions, so rows reach the result out of grid order.
    ctx.from_dataset("field", field, chunks={"lat": 2})
    return ctx


def test_per_row_derivatives_come_back_as_a_dataset_on_the_same_grid(
    xctx: XarrayContext, field: xr.Dataset
) -> None:
    result = xctx.sql(
        """
        SELECT lat, lon,
               grad(a * sin(b) + exp(a / 10), a) AS d_da,
               grad(a * sin(b) + exp(a / 10), b) AS d_db,
               jvp(ln(a * a + b), a, b) AS jvp_a,
               vjp(tanh(a * b), b, a) AS vjp_b
        FROM field
        """
    ).to_dataset(chunks=None)
    a, b = field["a"], field["b"]
    expected = {
        "d_da": np.sin(b) + np.exp(a / 10) / 10,
        "d_db": a * np.cos(b),
        "jvp_a": 2 * a / (a * a + b) * b,
        "vjp_b": a * a * (1 - np.tanh(a * b) ** 2),
    }
    assert set(result.data_vars) == set(expected)
    for name, want in expected.items():
        got = result[name]
        assert got.dims == ("lat", "lon")
        # join="exact" fails unless the coordinates, in their order, survived the round trip.
        got, want = xr.align(got, want, join="exact")
        np.testing.assert_allclose(got.values, want.values, rtol=1e-13, err_msg=name)


def test_coordinates_and_their_attributes_survive_the_round_trip(
    xctx: XarrayContext, field: xr.Dataset
) -> None:
    result = xctx.sql("SELECT lat, lon, grad(a * b, a) AS d_da FROM field").to_dataset(chunks=None)
    np.testing.assert_array_equal(result["lat"].values, field["lat"].values)
    np.testing.assert_array_equal(result["lon"].values, field["lon"].values)
    np.testing.assert_array_equal(result["coslat"].values, field["coslat"].values)
    assert result["lat"].attrs == {"units": "degrees_north"}
    assert result["lon"].attrs == {"units": "degrees_east"}
    np.testing.assert_array_equal(result["d_da"].values, field["b"].values)


def test_zonal_mean_of_a_derivative_is_a_dataset_over_latitude(
    xctx: XarrayContext, field: xr.Dataset
) -> None:
    result = xctx.sql(
        "SELECT lat, AVG(grad(power(a, 3) / b, a)) AS mean_slope FROM field GROUP BY lat"
    ).to_dataset(chunks=None)
    want = (3 * field["a"] ** 2 / field["b"]).mean("lon")
    got = result["mean_slope"]
    assert got.dims == ("lat",)
    assert set(got["lat"].values) == set(field["lat"].values)
    np.testing.assert_allclose(got.sel(lat=want["lat"]).values, want.values, rtol=1e-13)


def test_filtered_rows_keep_their_grid_cells(xctx: XarrayContext, field: xr.Dataset) -> None:
    result = xctx.sql(
        "SELECT lat, lon, grad(sqrt(a * a + b * b), b) AS d_db FROM field WHERE lat > 0"
    ).to_dataset(chunks=None, sparsity="template")
    a, b = field["a"], field["b"]
    want = (b / np.sqrt(a * a + b * b)).where(field["lat"] > 0)
    got, want = xr.align(result["d_db"], want, join="exact")
    np.testing.assert_allclose(got.values, want.values, rtol=1e-13)
    assert np.isnan(got.sel(lat=0.0)).all()


def test_climate_example_matches_closed_forms_and_draws_its_map(tmp_path: Path) -> None:
    results = climate.main(quick=True, out=tmp_path)
    assert results["points"] == 2 * 2 * 19 * 36
    assert 0.0 <= results["speed_rel_error"] <= 1e-12
    assert 0.0 <= results["des_dt_rel_error"] <= 1e-12
    assert results["sql_seconds"] > 0.0
    png = Path(results["map"])
    assert png.parent == tmp_path
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert png.stat().st_size > 10_000


def test_climate_fields_are_physical() -> None:
    ds = climate.era5_like(climate.QUICK_GRID)
    assert ds["u"].dims == ("time", "level", "lat", "lon")
    assert ds["temperature"].attrs["units"] == "K"
    assert 200.0 < float(ds["temperature"].min()) < float(ds["temperature"].max()) < 310.0
    # Warmer at the equator than at the poles, and colder aloft.
    surface = ds["temperature"].sel(level=1000.0)
    assert float(surface.sel(lat=0.0).mean()) > float(surface.sel(lat=90.0).mean()) + 30.0
    assert float(ds["temperature"].sel(level=500.0).mean()) < float(surface.mean())
    # Mid-latitude westerlies strengthen with height; easterlies at the equator near the surface.
    jet = ds["u"].sel(lat=[40.0, -40.0]).mean(["time", "lat", "lon"])
    assert float(jet.sel(level=500.0)) > 20.0
    assert float(jet.sel(level=500.0)) > float(jet.sel(level=1000.0)) + 10.0
    assert float(ds["u"].sel(level=1000.0, lat=0.0).mean()) < -3.0
