-- The network's loss on the current step's mini-batch: the mean cross-entropy of a
-- 64 → 32 tanh → 10 softmax classifier. This is the forward pass only; gradient()
-- differentiates it (step.sql).
-- Reads params(tensor, i, j, w), the model's whole state: the weights 'w1' (i: pixel,
-- j: hidden unit), the biases 'b1' (j: hidden unit), the weights 'w2' (i: hidden unit,
-- j: class), the biases 'b2' (j: class) and the step counter 'step' (w: the step); and
-- schedule(step, s), train_pixels(s, i, v) and train_labels(s, k, onehot).
WITH batch AS (
    SELECT s FROM schedule WHERE step = (SELECT w FROM params WHERE tensor = 'step')
),
hidden AS (
    SELECT x.s, w1.j, tanh(SUM(x.v * w1.w) + b1.w) AS h
    FROM train_pixels x
    JOIN batch ON x.s = batch.s
    JOIN params w1 ON w1.tensor = 'w1' AND x.i = w1.i
    JOIN params b1 ON b1.tensor = 'b1' AND w1.j = b1.j
    GROUP BY x.s, w1.j, b1.w
),
logits AS (
    SELECT h.s, w2.j AS k, SUM(h.h * w2.w) + b2.w AS z
    FROM hidden h
    JOIN params w2 ON w2.tensor = 'w2' AND h.j = w2.i
    JOIN params b2 ON b2.tensor = 'b2' AND w2.j = b2.j
    GROUP BY h.s, w2.j, b2.w
),
-- The log-softmax, with the per-sample maximum subtracted first so that exp cannot overflow.
shifted AS (
    SELECT s, k, z - MAX(z) OVER (PARTITION BY s) AS z FROM logits
),
log_softmax AS (
    SELECT s, k, z - ln(SUM(exp(z)) OVER (PARTITION BY s)) AS logp FROM shifted
)
SELECT AVG(cross_entropy) AS loss
FROM (SELECT p.s, -SUM(y.onehot * p.logp) AS cross_entropy
      FROM log_softmax p JOIN train_labels y ON p.s = y.s AND p.k = y.k
      GROUP BY p.s) samples;
