"""SQLite connect arguments for the local Airflow metadata database.

The scheduler, DAG processor, triggerer and API server all write to one SQLite file; SQLite's
default busy timeout (5 s) makes a write fail with "database is locked" (an API 500) when the
machine is loaded. Airflow imports these by path (``[database] sql_alchemy_connect_args``).
"""

CONNECT_ARGS = {"timeout": 30.0}  # seconds a connection waits for another's write lock
AIRFLOW_API_TIMEOUT_S = 60.0  # Tidemill's clients of the Airflow API outwait that lock wait
