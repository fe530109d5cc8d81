"""Several registered models in one install: their endpoints, split files and
InferenceServices are each model's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.home import TidemillHome
from serving.config import parse_served
from serving.split import LocalSplitBackend, Split, SplitError, backend_from_env, isvc_name


def test_served_model_specs() -> None:
    assert parse_served(["etth1"], "tidemill-forecaster") == [("etth1", "tidemill-forecaster")]
    assert parse_served(["a", "b=cls"], "tidemill-forecaster") == [("a", "a"), ("b", "cls")]
    with pytest.raises(ValueError, match="endpoint 'x' is given to more than one model"):
        parse_served(["a=x", "b=x"], "e")
    with pytest.raises(ValueError, match="named twice"):
        parse_served(["a=x", "a=y"], "e")
    with pytest.raises(ValueError, match="expected REGISTERED"):
        parse_served(["=x"], "e")


def test_each_model_keeps_its_own_split_file(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIDEMILL_SPLIT_STATE_URL", raising=False)
    monkeypatch.delenv("TIDEMILL_SPLIT_BACKEND", raising=False)
    home = TidemillHome.resolve(tmp_path)
    a, b = (backend_from_env(home, name) for name in ("model-a", "model-b"))
    assert isinstance(a, LocalSplitBackend) and isinstance(b, LocalSplitBackend)
    assert a.path == tmp_path / "serving" / "splits" / "model-a.json"
    assert a.intent.url != b.intent.url
    a.apply(Split("models:/model-a/1", "models:/model-a/2", 30))
    assert b.get() is None
    assert LocalSplitBackend.for_home(home).path == a.path  # the one split kept here
    b.apply(Split("models:/model-b/1"))
    assert a.get() == Split("models:/model-a/1", "models:/model-a/2", 30)
    with pytest.raises(SplitError, match=r"name the registered model: 2 splits"):
        LocalSplitBackend.for_home(home)


def test_each_model_has_its_own_inferenceservice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEMILL_ISVC_NAME", "tidemill-forecaster")
    monkeypatch.delenv("TIDEMILL_ISVC_NAMES", raising=False)
    assert isvc_name("etth1") == "tidemill-forecaster"
    monkeypatch.setenv("TIDEMILL_ISVC_NAMES",
                       '{"etth1": "tidemill-forecaster", "ai4i": "tidemill-classifier"}')
    assert isvc_name("ai4i") == "tidemill-classifier"
    assert isvc_name("etth1") == "tidemill-forecaster"
    with pytest.raises(SplitError, match="no InferenceService serves 'other'") as err:
        isvc_name("other")
    assert err.value.status == 404
    monkeypatch.setenv("TIDEMILL_ISVC_NAMES", "[1]")
    with pytest.raises(ValueError, match="must be a JSON object"):
        isvc_name("ai4i")
