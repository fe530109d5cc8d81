"""The alert rules pass promtool, and every alert has a unit test that makes it fire."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "alerts" / "tidemill-rules.yaml"
TESTS = sorted((ROOT / "monitoring" / "alerts" / "tests").glob("*.yaml"))


def promtool(tools: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tools["promtool"], *map(str, args)], capture_output=True, text=True, timeout=60
    )


def alerts_in(path: Path) -> set[str]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_rules_pass_promtool_check(prometheus_bin: dict[str, str]) -> None:
    done = promtool(prometheus_bin, "check", "rules", RULES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts_in(RULES))} rules found" in done.stdout


def test_rule_unit_tests_pass(prometheus_bin: dict[str, str]) -> None:
    assert TESTS, "no promtool test files in monitoring/alerts/tests/"
    done = promtool(prometheus_bin, "test", "rules", *TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    fired: set[str] = set()
    for path in TESTS:
        spec = yaml.safe_load(path.read_text())
        assert [(path.parent / f).resolve() for f in spec["rule_files"]] == [RULES.resolve()]
        for case in spec["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    missing = alerts_in(RULES) - fired
    assert not missing, f"alerts without a unit test that fires them: {sorted(missing)}"
    assert fired <= alerts_in(RULES), (
        f"tests for unknown alerts: {sorted(fired - alerts_in(RULES))}"
    )
