"""Keep every test off the user's real homes: Airflow and Tidemill homes go to a temp dir."""

import os
import tempfile

_SCRATCH = tempfile.mkdtemp(prefix="tidemill-tests-")
os.environ.setdefault("AIRFLOW_HOME", os.path.join(_SCRATCH, "airflow"))
os.environ.setdefault("TIDEMILL_HOME", os.path.join(_SCRATCH, "home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
