-- Two derivatives at every grid cell of era5(time, level, lat, lon, u, v, temperature):
-- the sensitivity of wind speed to the eastward wind, grad(sqrt(u*u + v*v), u) = u/|V|,
-- and the slope with respect to temperature (in K) of the saturation vapour pressure over
-- water in hPa, e_s = A·exp(B·tc / (tc + C)) with tc = temperature − 273.15 in °C and
-- Magnus coefficients A = 6.112, B = 17.67, C = 243.5 (Bolton 1980).
SELECT time, level, lat, lon,
       grad(sqrt(u * u + v * v), u) AS dspeed_du,
       grad(6.112 * exp(17.67 * (temperature - 273.15) / ((temperature - 273.15) + 243.5)), temperature) AS des_dt
FROM era5;
