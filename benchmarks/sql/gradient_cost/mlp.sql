-- The mean cross-entropy of a 64 → 32 tanh → 10 softmax classifier over every sample, as in
-- sql/mlp_gradient/backward.sql: the forward pass only; P7 differentiates it with respect to
-- all four parameter tables. Reads x(s, i, v), y(s, k, onehot), w1(i, j, w), b1(j, b),
-- w2(j, k, w) and b2(k, b).
WITH hidden AS (
    SELECT x.s, w1.j, tanh(SUM(x.v * w1.w) + b1.b) AS h
    FROM x JOIN w1 ON x.i = w1.i JOIN b1 ON w1.j = b1.j
    GROUP BY x.s, w1.j, b1.b
),
logits AS (
    SELECT h.s, w2.k, SUM(h.h * w2.w) + b2.b AS z
    FROM hidden h JOIN w2 ON h.j = w2.j JOIN b2 ON w2.k = b2.k
    GROUP BY h.s, w2.k, b2.b
),
shifted AS (
    SELECT s, k, z - MAX(z) OVER (PARTITION BY s) AS z FROM logits
),
log_softmax AS (
    SELECT s, k, z - ln(SUM(exp(z)) OVER (PARTITION BY s)) AS logp FROM shifted
)
SELECT AVG(cross_entropy) AS loss
FROM (SELECT p.s, -SUM(y.onehot * p.logp) AS cross_entropy
      FROM log_softmax p JOIN y ON p.s = y.s AND p.k = y.k
      GROUP BY p.s) samples;
