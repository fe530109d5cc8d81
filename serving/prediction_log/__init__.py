"""The prediction log: every served prediction and every actual value fed back, in one store
(SQLite by default, any SQLAlchemy URL such as PostgreSQL in production). ``schema`` holds the
tables, ``writer`` the non-blocking batched writer, ``reader`` the queries the A/B endpoint and
the promotion DAG share. Imports neither airflow nor kserve.
"""
