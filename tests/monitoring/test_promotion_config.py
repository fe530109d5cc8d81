"""promote_challenger judges the registration that triggered it: the config comes from the
latest model Asset event, the trigger form's only for a manual run."""

from __future__ import annotations

import pytest

from monitoring.promotion_job import promotion_config


def test_the_latest_event_names_the_config() -> None:
    events = [
        {"name": "a", "version": "3", "config": "s3://store/runs/a/config.yaml"},
        {"name": "b", "version": "7", "config": "/home/runs/b/config.yaml"},
    ]
    assert promotion_config(events, "/configs/etth1.yaml") == "/home/runs/b/config.yaml"


def test_a_manual_run_uses_the_form() -> None:
    assert promotion_config([], "/configs/etth1.yaml") == "/configs/etth1.yaml"


def test_an_event_without_a_config_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'b' v7 names no config"):
        promotion_config([{"name": "b", "version": "7"}], "/configs/etth1.yaml")
