"""The platform API: datasets, dataset versions and training jobs as a service.

    uvicorn serving.platform_api.app:app --host 127.0.0.1 --port 8001    (OpenAPI at /docs)

It runs in the serving environment beside the control API: the model endpoints delegate to the
same registry aliases and split control (``serving.split``), cleaning, feature selection and
splitting are ``pipelines.tabular``'s own functions, and training jobs are Airflow DAG runs
started through Airflow's REST API (no Airflow import here).
"""
