-- The L2-regularised logistic loss of scikit-learn's LogisticRegression with C = 1: the
-- sum over samples of ln(1 + e^z) − y·z, with the margin z = Σ_j x_j·w_j (feature 30 is the
-- constant 1, whose weight is the intercept), plus ½‖w‖² over the 30 coefficients (the
-- intercept is not penalised). The loss only; ag.gradient and ag.hvp differentiate it.
-- Reads x(s, j, v), y(s, y) and coef(j, w).
WITH margins AS (
    SELECT x.s, SUM(x.v * coef.w) AS z FROM x JOIN coef ON x.j = coef.j GROUP BY x.s
)
SELECT (SELECT SUM(ln(1 + exp(m.z)) - y.y * m.z) FROM margins m JOIN y ON m.s = y.s)
     + (SELECT 0.5 * SUM(w * w) FROM coef WHERE j < 30) AS loss;
