"""Project and deployment names are explained in words, in errors and in the schema."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.factories import make_key

WORDS = (
    "lower-case letters, digits and hyphens, 1-63 characters, "
    "starting and ending with a letter or digit"
)


def test_a_bad_project_name_is_explained_in_words(client: TestClient, db: Session) -> None:
    key = make_key(db)
    db.commit()
    for name in ("Recommender", "-x", "x-", "a_b", "", "a" * 64):
        answer = client.post("/v1/projects", json={"name": name}, headers=key.headers)
        assert answer.status_code == 422, name
        assert answer.headers["content-type"] == "application/problem+json"
        assert WORDS in answer.json()["detail"], answer.json()["detail"]
    assert client.post("/v1/projects", json={"name": "a"}, headers=key.headers).status_code == 201


def test_the_schema_states_the_rule_in_words_and_as_a_pattern(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ProjectCreate"]
    name = schema["properties"]["name"]
    assert WORDS in name["description"]
    assert name["pattern"].startswith("^[a-z0-9]")
