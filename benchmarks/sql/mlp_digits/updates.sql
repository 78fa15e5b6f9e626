-- One gradient step for every parameter table, with the learning rate hyper.lr.
--
-- Each parameter moves against the sum over the batch of the vjp of the forward expression
-- it appears in, grouped by its own keys. Both gradients (output_grad.sql, hidden_grad.sql)
-- read the old w2, so the updates run after them.
CREATE OR REPLACE TABLE w1 AS
SELECT w1.i, w1.j, w1.w - (SELECT lr FROM hyper) * SUM(vjp(x.v * w1.w, w1.w, d.delta)) AS w
FROM w1
JOIN batch_pixels x ON x.i = w1.i
JOIN hidden_grad d ON d.s = x.s AND d.j = w1.j
GROUP BY w1.i, w1.j, w1.w;

CREATE OR REPLACE TABLE b1 AS
SELECT b1.j, b1.b - (SELECT lr FROM hyper) * SUM(vjp(h.xw + b1.b, b1.b, d.delta)) AS b
FROM b1
JOIN hidden h ON h.j = b1.j
JOIN hidden_grad d ON d.s = h.s AND d.j = h.j
GROUP BY b1.j, b1.b;

CREATE OR REPLACE TABLE w2 AS
SELECT w2.j, w2.k, w2.w - (SELECT lr FROM hyper) * SUM(vjp(h.h * w2.w, w2.w, d.delta)) AS w
FROM w2
JOIN hidden h ON h.j = w2.j
JOIN output_grad d ON d.s = h.s AND d.k = w2.k
GROUP BY w2.j, w2.k, w2.w;

CREATE OR REPLACE TABLE b2 AS
SELECT b2.k, b2.b - (SELECT lr FROM hyper) * SUM(vjp(o.hw + b2.b, b2.b, d.delta)) AS b
FROM b2
JOIN output o ON o.k = b2.k
JOIN output_grad d ON d.s = o.s AND d.k = o.k
GROUP BY b2.k, b2.b;
