-- One backward pass: the gradient of the network's loss on the current step's mini-batch
-- with respect to every weight and bias, in one statement. The loss is the CTE `loss` — the
-- forward pass only, the mean cross-entropy of a 64 → 32 tanh → 10 softmax classifier — and
-- grad((SELECT l FROM loss), w) is ∂loss/∂(this row's w); the four tables' gradients share one
-- reverse pass. Nothing here is a derivative written by hand. The loss itself is a row too.
-- Reads w1(i, j, w), b1(j, b), w2(j, k, w), b2(k, b), hyper(step, lr), schedule(step, s),
-- train_pixels(s, i, v) and train_labels(s, k, onehot).
CREATE OR REPLACE TABLE gradients AS
WITH batch AS (
    SELECT s FROM schedule WHERE step = (SELECT step FROM hyper)
),
hidden AS (
    SELECT x.s, w1.j, tanh(SUM(x.v * w1.w) + b1.b) AS h
    FROM train_pixels x
    JOIN batch ON x.s = batch.s
    JOIN w1 ON x.i = w1.i
    JOIN b1 ON w1.j = b1.j
    GROUP BY x.s, w1.j, b1.b
),
logits AS (
    SELECT h.s, w2.k, SUM(h.h * w2.w) + b2.b AS z
    FROM hidden h
    JOIN w2 ON h.j = w2.j
    JOIN b2 ON w2.k = b2.k
    GROUP BY h.s, w2.k, b2.b
),
-- The log-softmax, with the per-sample maximum subtracted first so that exp cannot overflow.
shifted AS (
    SELECT s, k, z - MAX(z) OVER (PARTITION BY s) AS z FROM logits
),
log_softmax AS (
    SELECT s, k, z - ln(SUM(exp(z)) OVER (PARTITION BY s)) AS logp FROM shifted
),
loss AS (
    SELECT AVG(cross_entropy) AS l
    FROM (SELECT p.s, -SUM(y.onehot * p.logp) AS cross_entropy
          FROM log_softmax p JOIN train_labels y ON p.s = y.s AND p.k = y.k
          GROUP BY p.s) samples
)
SELECT 'w1' AS tensor, i, j, w AS value, grad((SELECT l FROM loss), w) AS grad FROM w1
UNION ALL SELECT 'b1', 0, j, b, grad((SELECT l FROM loss), b) FROM b1
UNION ALL SELECT 'w2', j, k, w, grad((SELECT l FROM loss), w) FROM w2
UNION ALL SELECT 'b2', 0, k, b, grad((SELECT l FROM loss), b) FROM b2
UNION ALL SELECT 'loss', 0, 0, l, NULL FROM loss;
