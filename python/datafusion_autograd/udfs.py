"""The markers as ``datafusion.ScalarUDF`` objects, built from FFI capsules."""

from datafusion import ScalarUDF

from datafusion_autograd._native import GradUDF, JvpUDF, VjpUDF

grad_udf: ScalarUDF = ScalarUDF.from_pycapsule(GradUDF())
"""``grad(expr, column)`` = ∂expr/∂column."""

jvp_udf: ScalarUDF = ScalarUDF.from_pycapsule(JvpUDF())
"""``jvp(expr, column, tangent)`` = ∂expr/∂column · tangent."""

vjp_udf: ScalarUDF = ScalarUDF.from_pycapsule(VjpUDF())
"""``vjp(expr, column, cotangent)`` = cotangent · ∂expr/∂column."""

MARKERS: tuple[ScalarUDF, ...] = (grad_udf, jvp_udf, vjp_udf)
