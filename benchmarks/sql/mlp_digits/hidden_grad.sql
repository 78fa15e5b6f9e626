-- Backward pass, hidden layer: δ = ∂loss/∂z per (sample, hidden unit). The cotangent of h
-- is the sum over classes of vjp(h·w2, h, δ_out), then tanh's vjp.
-- Reads hidden(s, j, xw, z, h), w2(j, k, w) and output_grad(s, k, delta).
CREATE OR REPLACE TABLE hidden_grad AS
SELECT h.s, h.j, vjp(tanh(h.z), h.z, up.g) AS delta
FROM (SELECT hid.s, hid.j, SUM(vjp(hid.h * w2.w, hid.h, d.delta)) AS g
      FROM hidden hid
      JOIN w2 ON hid.j = w2.j
      JOIN output_grad d ON d.s = hid.s AND d.k = w2.k
      GROUP BY hid.s, hid.j) up
JOIN hidden h ON h.s = up.s AND h.j = up.j;
