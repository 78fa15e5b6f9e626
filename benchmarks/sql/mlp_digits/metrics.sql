-- Mean cross-entropy, and the share of samples whose true class has the largest
-- probability, over the samples in output(s, k, …, p, logp, onehot).
SELECT -SUM(onehot * logp) / COUNT(DISTINCT s) AS loss,
       SUM(CASE WHEN onehot = 1 AND p = best THEN 1.0 ELSE 0.0 END) / COUNT(DISTINCT s) AS accuracy
FROM (SELECT s, p, logp, onehot, MAX(p) OVER (PARTITION BY s) AS best FROM output) o;
