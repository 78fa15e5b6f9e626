-- Forward pass, hidden layer: one row per (sample, hidden unit) with xw = Σ_i x·w1,
-- z = xw + b1 and h = tanh(z). Reads batch_pixels(s, i, v), w1(i, j, w) and b1(j, b).
CREATE OR REPLACE TABLE hidden AS
SELECT xw.s, xw.j, xw.xw, xw.xw + b1.b AS z, tanh(xw.xw + b1.b) AS h
FROM (SELECT x.s, w1.j, SUM(x.v * w1.w) AS xw
      FROM batch_pixels x JOIN w1 ON x.i = w1.i
      GROUP BY x.s, w1.j) xw
JOIN b1 ON xw.j = b1.j;
