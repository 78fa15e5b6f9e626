"""The markers and ``stop_gradient`` as ``datafusion.ScalarUDF`` objects, built from FFI capsules."""

from datafusion import ScalarUDF

from datafusion_autograd._native import GradUDF, JvpUDF, StopGradientUDF, VjpUDF

grad_udf: ScalarUDF = ScalarUDF.from_pycapsule(GradUDF())
jvp_udf: ScalarUDF = ScalarUDF.from_pycapsule(JvpUDF())
vjp_udf: ScalarUDF = ScalarUDF.from_pycapsule(VjpUDF())
stop_gradient_udf: ScalarUDF = ScalarUDF.from_pycapsule(StopGradientUDF())

MARKERS: tuple[ScalarUDF, ...] = (grad_udf, jvp_udf, vjp_udf)
FUNCTIONS: tuple[ScalarUDF, ...] = (*MARKERS, stop_gradient_udf)
