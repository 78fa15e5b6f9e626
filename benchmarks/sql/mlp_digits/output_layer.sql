-- Forward pass, output layer: one row per (sample, class) with hw = Σ_j h·w2, the logits
-- z = hw + b2, their per-sample max m, total = Σ_k exp(z − m), the softmax p and its
-- logarithm (computed without rounding p first), next to the sample's one-hot label.
-- Reads hidden(s, j, xw, z, h), w2(j, k, w), b2(k, b) and batch_labels(s, k, onehot).
CREATE OR REPLACE TABLE output AS
WITH logits AS (
    SELECT hw.s, hw.k, hw.hw, hw.hw + b2.b AS z
    FROM (SELECT h.s, w2.k, SUM(h.h * w2.w) AS hw
          FROM hidden h JOIN w2 ON h.j = w2.j
          GROUP BY h.s, w2.k) hw
    JOIN b2 ON hw.k = b2.k
),
shifted AS (
    SELECT s, k, hw, z, MAX(z) OVER (PARTITION BY s) AS m FROM logits
),
normalised AS (
    SELECT s, k, hw, z, m, SUM(exp(z - m)) OVER (PARTITION BY s) AS total FROM shifted
)
SELECT n.s, n.k, n.hw, n.z, n.m, n.total,
       exp(n.z - n.m) / n.total AS p,
       n.z - n.m - ln(n.total) AS logp,
       y.onehot
FROM normalised n JOIN batch_labels y ON n.s = y.s AND n.k = y.k;
