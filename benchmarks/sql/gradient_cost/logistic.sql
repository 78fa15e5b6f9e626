-- The mean logistic loss ln(1 + e^z) − l·z of a linear model with margin z = Σ_i x_i·w_i over
-- samples stored in long form, l the 0/1 label. The loss only; P7 differentiates it.
-- Reads x(s, i, v), w(i, w) and y(s, t, l).
SELECT AVG(ln(1 + exp(p.z)) - y.l * p.z) AS loss
FROM (SELECT x.s, SUM(x.v * w.w) AS z FROM x JOIN w ON x.i = w.i GROUP BY x.s) p
JOIN y ON p.s = y.s;
