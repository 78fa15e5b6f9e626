"""Derivatives of climate diagnostics in SQL over an ERA5-like ``xarray.Dataset``.

A gridded Dataset goes into SQL through ``xarray_sql.XarrayContext`` and the
derivatives, computed by one query (``sql/climate/derivatives.sql``), come back
as an ``xarray.Dataset`` on the same grid, one evaluation point per grid cell:

* wind-speed sensitivity ``grad(sqrt(u*u + v*v), u)``, which is exactly
  ``u / speed``;
* the slope of the saturation vapour pressure over water (Magnus form,
  ``e_s = A·exp(B·tc / (tc + C))`` with ``tc`` in °C) with respect to
  ``temperature`` in kelvin, checked against the closed form
  ``de_s/dT = e_s·B·C / (tc + C)²`` that follows from Clausius–Clapeyron for
  this fit.

The Dataset is built in code (no download): time × level × lat × lon on a
regular global grid with pressure levels in hPa, smooth jet-stream winds, a
travelling wave in the meridional wind, temperature falling poleward and with
height, and a little seeded noise. Both derivatives are compared with numpy on
the same arrays and must agree to a relative 1e-12 and 1e-10; a map of de_s/dT at the
lowest level is saved as a PNG.

Run from the repository root::

    .venv/bin/python -m benchmarks.climate            # 8 × 4 × 73 × 144 grid
    .venv/bin/python -m benchmarks.climate --quick    # 2 × 2 × 19 × 36 grid
    .venv/bin/python -m benchmarks.climate --out /tmp/maps
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: must work without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from xarray_sql import XarrayContext  # noqa: E402

from benchmarks.cli import RESULTS, arguments  # noqa: E402
from benchmarks.compare import check, max_relative_difference  # noqa: E402
from benchmarks.sql import statement  # noqa: E402
from benchmarks.timing import timed  # noqa: E402
import datafusion_autograd as ag  # noqa: E402

SEED = 0
# u/|V| comes out of the rule for sqrt almost verbatim; the Magnus slope is a
# different but equal formula, evaluated with exp on both sides.
TOLERANCES = {"speed_rel_error": 1e-12, "des_dt_rel_error": 1e-10}
# The table that sql/climate/derivatives.sql reads.
TABLE = "era5"
MAP_FILE = "climate_des_dt.png"

KELVIN_AT_0C = 273.15
# Magnus coefficients over liquid water (Bolton 1980): e_s in hPa, tc in °C; the SQL
# writes them out as literals, and the check against numpy keeps the two in step.
MAGNUS_A = 6.112
MAGNUS_B = 17.67
MAGNUS_C = 243.5

WAVENUMBER = 5
QUARTER_WAVELENGTH_DEG = 360.0 / WAVENUMBER / 4

# Levels ordered as ERA5 stores them: pressure increasing downward.
FULL_LEVELS_HPA = (250.0, 500.0, 850.0, 1000.0)
QUICK_LEVELS_HPA = (500.0, 1000.0)


@dataclass(frozen=True)
class Grid:
    """Sizes of an ERA5-like grid: six-hourly times, pressure levels and a regular lat/lon mesh."""

    times: int
    levels: tuple[float, ...]
    lats: int
    lons: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.times, len(self.levels), self.lats, self.lons)


FULL_GRID = Grid(times=8, levels=FULL_LEVELS_HPA, lats=73, lons=144)
QUICK_GRID = Grid(times=2, levels=QUICK_LEVELS_HPA, lats=19, lons=36)


def coordinates(grid: Grid) -> dict[str, xr.Variable]:
    """Dimension coordinates with CF units; latitude runs north to south as in ERA5."""
    return {
        "time": xr.Variable(
            "time",
            np.datetime64("2024-01-01T00:00", "ns") + np.arange(grid.times) * np.timedelta64(6, "h"),
            {"long_name": "time"},
        ),
        "level": xr.Variable(
            "level", np.array(grid.levels), {"units": "hPa", "long_name": "pressure level"}
        ),
        "lat": xr.Variable(
            "lat", np.linspace(90.0, -90.0, grid.lats), {"units": "degrees_north", "long_name": "latitude"}
        ),
        "lon": xr.Variable(
            "lon",
            np.linspace(0.0, 360.0, grid.lons, endpoint=False),
            {"units": "degrees_east", "long_name": "longitude"},
        ),
    }


def height_factor(pressure_hpa: np.ndarray) -> np.ndarray:
    """0.25 at 1000 hPa rising to 1 at 250 hPa: winds strengthen with height up to the jet."""
    return 0.25 + 0.75 * np.log(1000.0 / pressure_hpa) / np.log(4.0)


def zonal_wind(lat: np.ndarray, pressure: np.ndarray) -> np.ndarray:
    """Westerly jets near ±35° that peak aloft, over weak surface easterlies in the tropics."""
    jets = np.exp(-(((lat - 35.0) / 12.0) ** 2)) + np.exp(-(((lat + 35.0) / 12.0) ** 2))
    trade_winds = np.exp(-((lat / 15.0) ** 2)) * (pressure / 1000.0)
    return 45.0 * height_factor(pressure) * jets - 6.0 * trade_winds


def travelling_wave(lat: np.ndarray, lon: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """A zonal wavenumber-5 pattern in mid-latitudes drifting east at 10° of longitude a day."""
    phase = np.deg2rad(WAVENUMBER * (lon - 10.0 * hours / 24.0))
    midlatitudes = np.exp(-(((np.abs(lat) - 45.0) / 20.0) ** 2))
    return np.sin(phase) * midlatitudes


def air_temperature(lat: np.ndarray, pressure: np.ndarray) -> np.ndarray:
    """About 300 K at the equator, 250 K at the poles at 1000 hPa; T ∝ p^0.19 aloft (standard lapse rate)."""
    surface = 300.0 - 50.0 * np.sin(np.deg2rad(lat)) ** 2
    return surface * (pressure / 1000.0) ** 0.19


def era5_like(grid: Grid, seed: int = SEED) -> xr.Dataset:
    """Wind components u, v (m s-1) and temperature (K) on ``grid``, smooth fields plus seeded noise."""
    coords = coordinates(grid)
    hours = (coords["time"].values - coords["time"].values[0]) / np.timedelta64(1, "h")
    # Broadcast every axis to (time, level, lat, lon).
    hours = hours[:, None, None, None]
    pressure = coords["level"].values[None, :, None, None]
    lat = coords["lat"].values[None, None, :, None]
    lon = coords["lon"].values[None, None, None, :]
    rng = np.random.default_rng(seed)

    def noise(scale: float) -> np.ndarray:
        return rng.normal(0.0, scale, grid.shape)

    u = np.broadcast_to(zonal_wind(lat, pressure), grid.shape) + noise(0.5)
    v = 12.0 * height_factor(pressure) * travelling_wave(lat, lon, hours) + noise(0.5)
    thermal_wave = travelling_wave(lat, lon - QUARTER_WAVELENGTH_DEG, hours)
    temperature = air_temperature(lat, pressure) + 3.0 * thermal_wave + noise(0.2)
    dims = ("time", "level", "lat", "lon")
    return xr.Dataset(
        {
            "u": (dims, u, {"units": "m s-1", "long_name": "eastward wind"}),
            "v": (dims, v, {"units": "m s-1", "long_name": "northward wind"}),
            "temperature": (dims, temperature, {"units": "K", "long_name": "air temperature"}),
        },
        coords=coords,
        attrs={"title": "synthetic ERA5-like pressure-level fields", "seed": seed},
    )


def sql_derivatives(ds: xr.Dataset) -> tuple[xr.Dataset, float]:
    """Both derivatives computed in SQL, back as a Dataset on ``ds``'s grid, and the seconds taken.

    The time covers planning, execution and scattering rows into the Dataset.
    """
    ctx = ag.register(XarrayContext())
    # One partition per time step, as ERA5 is usually chunked.
    ctx.from_dataset(TABLE, ds, chunks={"time": 1})
    # chunks=None keeps the result in numpy: the default would hand the
    # time-chunked result to dask.
    result, seconds = timed(lambda: ctx.sql(statement("climate/derivatives")).to_dataset(chunks=None).load())
    result["dspeed_du"].attrs = {"units": "1", "long_name": "sensitivity of wind speed to u"}
    result["des_dt"].attrs = {"units": "hPa K-1", "long_name": "slope of saturation vapour pressure"}
    return result.transpose(*ds["u"].dims), seconds


def numpy_derivatives(ds: xr.Dataset) -> xr.Dataset:
    """The same derivatives in closed form: u/|V| and the Clausius–Clapeyron slope of the Magnus fit."""
    u = ds["u"].values
    v = ds["v"].values
    celsius = ds["temperature"].values - KELVIN_AT_0C
    saturation = MAGNUS_A * np.exp(MAGNUS_B * celsius / (celsius + MAGNUS_C))
    dims = ds["u"].dims
    return xr.Dataset(
        {
            "dspeed_du": (dims, u / np.sqrt(u * u + v * v)),
            "des_dt": (dims, saturation * MAGNUS_B * MAGNUS_C / (celsius + MAGNUS_C) ** 2),
        },
        coords=ds.coords,
    )


def max_relative_error(got: xr.DataArray, want: xr.DataArray) -> float:
    """``compare.max_relative_difference`` over the grid: infinite if a cell is missing (NaN) or non-finite.

    ``xr.align(join="exact")`` raises unless both sit on identical coordinates,
    so values are never compared across mismatched grid cells.
    """
    got, want = xr.align(got, want, join="exact")
    return max_relative_difference(got.values, want.values)


def save_map(field: xr.DataArray, path: Path) -> Path:
    """A lat × lon colour map of a 2-D field, with its units on the colour bar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(9, 4.5), layout="constrained")
    values = field.transpose("lat", "lon")
    mesh = axes.pcolormesh(field["lon"], field["lat"], values, shading="nearest", cmap="viridis")
    figure.colorbar(mesh, ax=axes, label=f"{field.attrs['long_name']} ({field.attrs['units']})")
    axes.set_xlabel("longitude (degrees east)")
    axes.set_ylabel("latitude (degrees north)")
    when = np.datetime_as_string(field["time"].values, unit="m")
    axes.set_title(f"de_s/dT at {field['level'].item():g} hPa, {when} (hPa K⁻¹), from grad() in SQL")
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def lowest_level_map(derivatives: xr.Dataset) -> xr.DataArray:
    """de_s/dT at the first time on the level nearest the surface (highest pressure)."""
    return derivatives["des_dt"].isel(time=0).sel(level=derivatives["level"].max())


def report(grid: Grid, results: dict) -> None:
    sizes = " × ".join(f"{size} {dim}" for size, dim in zip(grid.shape, ("times", "levels", "lat", "lon")))
    sql_seconds, numpy_seconds = results["sql_seconds"], results["numpy_seconds"]
    print(f"ERA5-like grid: {sizes} = {results['points']} points")
    print("  max relative error against numpy:")
    print(f"    grad(sqrt(u*u + v*v), u) vs u/|V|                {results['speed_rel_error']:.1e}")
    print(f"    grad(e_s(T), temperature) vs Clausius–Clapeyron  {results['des_dt_rel_error']:.1e}")
    print(f"  wall time: SQL query to Dataset {sql_seconds:.3f} s, numpy closed forms {numpy_seconds:.3f} s")
    print(f"  map: {results['map']}")


def main(quick: bool = False, out: Path | None = None) -> dict:
    """Builds the Dataset, differentiates in SQL, checks against numpy and saves the map.

    Returns the grid size, both maximum relative errors, the seconds spent in
    SQL and in numpy, and the path of the PNG. Raises ``AssertionError`` if an
    error exceeds its entry in ``TOLERANCES``.
    """
    grid = QUICK_GRID if quick else FULL_GRID
    ds = era5_like(grid)
    derivatives, sql_seconds = sql_derivatives(ds)
    reference, numpy_seconds = timed(numpy_derivatives, ds)
    results = {
        "points": int(np.prod(grid.shape)),
        "speed_rel_error": max_relative_error(derivatives["dspeed_du"], reference["dspeed_du"]),
        "des_dt_rel_error": max_relative_error(derivatives["des_dt"], reference["des_dt"]),
        "sql_seconds": sql_seconds,
        "numpy_seconds": numpy_seconds,
        "map": save_map(lowest_level_map(derivatives), (out or RESULTS) / MAP_FILE),
    }
    report(grid, results)
    for key, tolerance in TOLERANCES.items():
        check(key, results[key], tolerance)
    return results


if __name__ == "__main__":
    main(**arguments(__doc__, quick="a 2 × 2 × 19 × 36 grid, not 8 × 4 × 73 × 144", draws=True))
