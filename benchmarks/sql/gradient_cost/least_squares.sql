-- The mean squared error of a linear model over samples stored in long form: the prediction
-- z = Σ_i x_i·w_i of each sample against its target t. The loss only; P7 differentiates it.
-- Reads x(s, i, v), w(i, w) and y(s, t, l).
SELECT AVG(power(p.z - y.t, 2)) AS loss
FROM (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p
JOIN y ON p.s = y.s;
