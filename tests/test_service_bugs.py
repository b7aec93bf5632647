"""Service bugs found by the hostile-input work (issue 6), as failing tests.

Kept apart from tests/test_hostile.py (which is green) so they can be fixed in
the service and then folded back. None of them can turn doubt into a 404.
"""

from __future__ import annotations

import requests

from tests.test_hostile import cloud, demo, service  # noqa: F401 - pytest fixtures


def test_no_nesting_depth_makes_the_bulk_answer_a_500(service) -> None:  # noqa: F811
    """Items nested just below json.loads' limit parse, then blow the limit when echoed.

    The bulk answer echoes each invalid item whole ("uuid" and "input"), so
    rendering the response raises RecursionError in Falcon's JSON serializer:
    500 instead of a 4xx (found at depths 981-983 under Gunicorn here).
    """
    answers = {}
    with requests.Session() as session:
        for depth in range(900, 1100):
            body = b'{"uuids": [' + b"[" * depth + b"]" * depth + b"]}"
            answer = session.post(
                f"{service.url}/check",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            answers[depth] = answer.status_code
    assert [d for d, status in answers.items() if status >= 500] == []


def test_a_chunked_bulk_body_is_read_or_refused_with_411(service, demo) -> None:  # noqa: F811
    """A body sent with Transfer-Encoding: chunked is read as empty: "Invalid JSON".

    req.bounded_stream reads nothing without a Content-Length; Gunicorn sets
    wsgi.input_terminated, so the body could be read, or refused with 411.
    """

    def chunks():
        yield b'{"uuids": ["' + demo["existing"][0].encode() + b'"]}'

    answer = requests.post(
        f"{service.url}/check",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code in (200, 411), answer.text
    if answer.status_code == 200:
        assert answer.json()["results"][0]["code"] == 200


def test_a_400_for_a_text_plain_client_still_gives_the_reason(service) -> None:  # noqa: F811
    """README: "Everything else is 400 with a reason"; Accept: text/plain gets an empty body."""
    answer = requests.get(f"{service.url}/check/nope", headers={"Accept": "text/plain"}, timeout=10)
    assert answer.status_code == 400
    assert "not a UUID" in answer.text


def test_an_oversized_chunked_body_is_413(service) -> None:  # noqa: F811
    def chunks():
        yield b'{"uuids": ['
        for _ in range(2000):
            yield b'"' + b"0" * 1000 + b'",'

    answer = requests.post(
        f"{service.url}/check",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert answer.status_code in (411, 413), answer.text


def test_metrics_are_not_empty_without_a_preset_multiproc_dir(service, demo) -> None:  # noqa: F811
    """gunicorn_conf imports prometheus_client (through build_targets) before it sets
    PROMETHEUS_MULTIPROC_DIR, so every worker keeps in-memory values while /metrics
    reads the (empty) directory: 200 with an empty body, unless the variable was
    set before Gunicorn started (the systemd unit sets it; `instanceapi serve` by hand
    and the harness do not)."""
    assert requests.get(f"{service.url}/check/{demo['existing'][0]}", timeout=30).ok
    text = requests.get(f"{service.url}/metrics", timeout=30).text
    assert "instanceapi_checks_total" in text
