-- Backward pass, output layer: δ = ∂loss/∂z per (sample, class), from output.
--
-- The loss is the batch mean of −Σ_k onehot·logp, so each logp gets the cotangent
-- vjp(−onehot·logp, logp, 1/n). logp = z − m − ln(total) reaches z directly and through
-- total = Σ_k exp(z − m). m is held constant: logp does not depend on it (the m in total
-- cancels the explicit one), so this is the exact derivative.
CREATE OR REPLACE TABLE output_grad AS
WITH batch AS (
    SELECT COUNT(DISTINCT s) AS n FROM output
),
logp_grad AS (
    SELECT o.s, o.k, o.z, o.m, o.total, vjp(-o.onehot * o.logp, o.logp, 1.0 / batch.n) AS g
    FROM output o CROSS JOIN batch
),
total_grad AS (
    SELECT s, SUM(vjp(z - m - ln(total), total, g)) AS g FROM logp_grad GROUP BY s
)
SELECT l.s, l.k, vjp(l.z - l.m - ln(l.total), l.z, l.g) + vjp(exp(l.z - l.m), l.z, t.g) AS delta
FROM logp_grad l JOIN total_grad t ON l.s = t.s;
