"""Fixtures: one in-process Dataverse emulator per session, reset before every test."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
import requests

from local.emulators import tokens
from local.emulators.dataverse import DataverseServer, serve

ODATA_HEADERS = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}


class Api:
    """A keep-alive client of one emulator: Web API calls with a valid token, plus its control API."""

    def __init__(self, server: DataverseServer) -> None:
        self.server = server
        self.base = server.api_url
        self.control_url = server.url + "/_emulator"
        token, _ = tokens.mint(server.resource, subject="tester", app_id="tester-app", ttl_seconds=600)
        self.session = requests.Session()
        self.session.headers.update({**ODATA_HEADERS, "Authorization": f"Bearer {token}"})

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.base}/{path}", timeout=5, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def control(self, method: str, path: str, json: Any = None) -> requests.Response:
        return requests.request(method, f"{self.control_url}/{path}", json=json, timeout=5)

    def records(self) -> list[dict]:
        return self.control("GET", "leads").json()["value"]

    def create(self, **values: Any) -> str:
        response = self.post("leads", json=values)
        assert response.status_code == 204, response.text
        return response.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")


@pytest.fixture(scope="session")
def dataverse_server() -> Iterator[DataverseServer]:
    server = serve("127.0.0.1", 0, profile="full", alternate_key="hnt_domain")
    yield server
    server.shutdown()


@pytest.fixture
def api(dataverse_server: DataverseServer) -> Api:
    client = Api(dataverse_server)
    assert client.control("POST", "reset").status_code == 204
    return client


def error_of(response: requests.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]
