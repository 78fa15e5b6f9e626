-- Least-squares fit of y ≈ a·x + b by gradient descent, in one statement.
-- Each recursive step differentiates the mean squared error at the current
-- (a, b) over every point and moves against the gradient.
WITH RECURSIVE fit(step, a, b) AS (
    SELECT 0 AS step, CAST(0.0 AS DOUBLE) AS a, CAST(0.0 AS DOUBLE) AS b
    UNION ALL
    SELECT step + 1,
           a - 0.3 * AVG(grad(power(fit.a * points.x + fit.b - points.y, 2), fit.a)),
           b - 0.3 * AVG(grad(power(fit.a * points.x + fit.b - points.y, 2), fit.b))
    FROM fit CROSS JOIN points
    WHERE step < 600
    GROUP BY step, a, b
)
SELECT a, b FROM fit WHERE step = 600
