"""MLflow models-from-code entry: the pyfunc logged for every Tidemill model.

``mlflow.pyfunc.log_model(python_model=<this file>)`` stores this file instead of a pickled
object; loading it instantiates ``TidemillForecaster`` from the installed ``pipelines``.
"""

import mlflow.models

from pipelines.pyfunc_model import TidemillForecaster

mlflow.models.set_model(TidemillForecaster())
