-- Gradient descent for y ≈ a·exp(b·x) on points(x, y), in one statement, minimising the mean
-- squared error. The recursive term joins the current (a, b) with every point, takes
-- AVG(grad(loss, fit.a)) and AVG(grad(loss, fit.b)) and steps against them; the final
-- SELECT returns every step's parameters and loss, ordered by step.
--
-- Reads points(x, y), the start point start(a, b), and hyper(lr, steps): the learning rate
-- and the number of steps. The start point comes from a relation rather than literals:
-- DataFusion 54.0.0 fails a recursive CTE whose anchor columns are non-nullable while its
-- recursive term (AVG) makes them nullable, once the result is grouped
-- (apache/datafusion#22034, fixed for 54.1.0).
WITH RECURSIVE fit(step, a, b) AS (
    SELECT 0 AS step, a, b FROM start
    UNION ALL
    SELECT step + 1,
           a - (SELECT lr FROM hyper) * AVG(grad(power(fit.a * exp(fit.b * points.x) - points.y, 2), fit.a)),
           b - (SELECT lr FROM hyper) * AVG(grad(power(fit.a * exp(fit.b * points.x) - points.y, 2), fit.b))
    FROM fit CROSS JOIN points
    WHERE step < (SELECT steps FROM hyper)
    GROUP BY step, a, b
)
SELECT step, a, b, AVG(power(fit.a * exp(fit.b * points.x) - points.y, 2)) AS loss
FROM fit CROSS JOIN points
GROUP BY step, a, b
ORDER BY step;
