"""Parsing tabular requests by entity key (``serving.tabular_model``, ``serving.config``): off
without a feature server, the configured key and its type checked by name, the settings
checked when read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from serving import online_features
from serving.config import FeatureLookup, Limits
from serving.protocol import RequestError
from serving.tabular_model import parse_tabular_spec, parse_tabular_v1

LIMITS = Limits(max_batch=3)


@pytest.fixture
def lookup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(online_features, "_lookup", None)
    monkeypatch.setenv("TIDEMILL_FEAST_FEATURE_SERVER_URL", "http://127.0.0.1:9/")
    yield
    monkeypatch.setattr(online_features, "_lookup", None)


def refused(parse, body: dict) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse(body, {}, LIMITS)
    return caught.value


def test_entity_lookup_is_off_without_a_feature_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(online_features, "_lookup", None)
    monkeypatch.delenv("TIDEMILL_FEAST_FEATURE_SERVER_URL", raising=False)
    exc = refused(parse_tabular_spec, {"entity": {"UDI": 1}})
    assert (exc.status, exc.field) == (400, "entity")
    assert "TIDEMILL_FEAST_FEATURE_SERVER_URL" in str(exc)
    assert parse_tabular_spec({"features": {"Torque": 1.0}}, {}, LIMITS).entities is None


def test_entities_are_parsed_and_checked_by_name(lookup: None) -> None:
    one = parse_tabular_spec({"entity": {"UDI": 7}, "user_id": "u"}, {}, LIMITS)
    assert (one.entities, one.single, one.caller, one.entity_field) == ([7], True, "u", "entity")
    many = parse_tabular_v1({"entities": [{"UDI": 7}, {"UDI": 8}], "model_version": 2}, {},
                            LIMITS)
    assert (many.entities, many.single, many.model_version) == ([7, 8], False, "2")
    assert online_features.lookup() == FeatureLookup("http://127.0.0.1:9")
    for parse, body, field, words in (
        (parse_tabular_spec, {"entity": {"UDI": True}}, "entity.UDI", "must be int"),
        (parse_tabular_spec, {"entity": {"UDI": 1.5}}, "entity.UDI", "must be int"),
        (parse_tabular_spec, {"entity": {"UDI": 1, "Type": "L"}}, "entity", "one key 'UDI'"),
        (parse_tabular_spec, {"entity": 7}, "entity", "list of entity objects"),
        (parse_tabular_v1, {"entities": [{"UDI": 1}, {"udi": 2}]}, "entities[1]", "'UDI'"),
        (parse_tabular_v1, {"entities": [{"UDI": i} for i in range(4)]}, "entities", "limit"),
        (parse_tabular_v1, {"entities": [], "instances": []}, "entities", "not both"),
    ):
        exc = refused(parse, body)
        assert exc.field == field and words in str(exc), (body, str(exc))


def test_string_keys_and_settings(monkeypatch: pytest.MonkeyPatch, lookup: None) -> None:
    monkeypatch.setenv("TIDEMILL_FEAST_ENTITY_KEY", "Product ID")
    monkeypatch.setenv("TIDEMILL_FEAST_ENTITY_KEY_TYPE", "string")
    assert parse_tabular_spec({"entity": {"Product ID": "M14860"}}, {}, LIMITS).entities == [
        "M14860"]
    assert "must be str" in str(refused(parse_tabular_spec, {"entity": {"Product ID": 5}}))
    monkeypatch.setenv("TIDEMILL_FEAST_ENTITY_KEY_TYPE", "uuid")
    with pytest.raises(ValueError, match="TIDEMILL_FEAST_ENTITY_KEY_TYPE"):
        FeatureLookup.from_env()
    monkeypatch.setenv("TIDEMILL_FEAST_ENTITY_KEY_TYPE", "int64")
    monkeypatch.setenv("TIDEMILL_FEAST_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match="TIDEMILL_FEAST_TIMEOUT_S"):
        FeatureLookup.from_env()


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 500 Internal Server Error\r\n"
                                          b"content-length: 4\r\n\r\noops"])
def test_a_feature_server_that_hangs_or_fails_is_named(answer: bytes | None) -> None:
    """A real server on loopback that never answers is a 503 naming it and the timeout; one
    answering 500 is a 502 quoting it."""

    async def run() -> RequestError:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            if answer is None:
                await asyncio.sleep(5)
            else:
                writer.write(answer)
                await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            with pytest.raises(RequestError) as caught:
                await online_features.fetch(FeatureLookup(url, timeout_s=0.3), [7], ["Torque"],
                                            set(), "entity")
        finally:
            await online_features.close()
            server.close()
        assert url in str(caught.value) and caught.value.field == "entity"
        return caught.value

    exc = asyncio.run(run())
    if answer is None:
        assert exc.status == 503 and "did not answer within 0.3 s" in str(exc), str(exc)
    else:
        assert exc.status == 502 and "answered 500: oops" in str(exc), str(exc)
