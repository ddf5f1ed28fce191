"""Slack webhook client against a real local HTTP receiver answering 200 / 429 / 500."""

from __future__ import annotations

import pytest

from resources.slack import SlackNotifier, SlackResource
from tests.servers import ScriptedWebhook


@pytest.fixture
def webhook():
    receiver = ScriptedWebhook()
    yield receiver
    receiver.stop()


def notifier(url, **kwargs) -> SlackNotifier:
    return SlackNotifier(url, backoff_seconds=0.05, timeout=5, **kwargs)


def test_delivers_text_as_json(webhook):
    outcome = notifier(webhook.url).send("🚨 cam-07 yaw +0.712°")
    assert (outcome.delivered, outcome.status, outcome.attempts, outcome.error) == (True, 200, 1, None)
    assert webhook.texts() == ["🚨 cam-07 yaw +0.712°"]
    assert webhook.requests[0].path == "/services/T0SECRET/B0SECRET/xoxSECRETtoken"


def test_429_waits_for_retry_after_then_delivers(webhook):
    webhook.script = [(429, {"Retry-After": "1"})]
    outcome = notifier(webhook.url).send("hello")
    assert outcome.delivered and outcome.attempts == 2
    first, second = webhook.requests
    assert second.at - first.at >= 0.9  # Retry-After honoured, not the 0.05 s backoff
    assert webhook.texts() == ["hello", "hello"]


def test_5xx_retried_with_backoff_then_delivered(webhook):
    webhook.script = [(500, {}), (503, {})]
    outcome = notifier(webhook.url).send("hello")
    assert outcome.delivered and outcome.attempts == 3 and outcome.status == 200


def test_persistent_5xx_gives_up_without_raising(webhook):
    webhook.script = [(500, {})] * 10
    outcome = notifier(webhook.url, max_attempts=3).send("hello")
    assert not outcome.delivered and outcome.attempts == 3 and outcome.status == 500
    assert "HTTP 500" in outcome.error
    assert "SECRET" not in outcome.error


def test_4xx_other_than_429_is_not_retried(webhook):
    webhook.script = [(404, {})]
    outcome = notifier(webhook.url).send("hello")
    assert not outcome.delivered and outcome.attempts == 1
    assert outcome.error == "HTTP 404: no_service"


def test_unreachable_webhook_never_raises_nor_reveals_url(webhook):
    url = webhook.url
    webhook.stop()  # nothing listens there any more
    slack = notifier(url, max_attempts=2)
    outcome = slack.send("hello")
    assert not outcome.delivered and outcome.status is None and outcome.attempts == 2
    assert "SECRET" not in outcome.error and url not in outcome.error
    assert "SECRET" not in repr(slack)


def test_without_webhook_echoes_to_stdout(capsys):
    outcome = SlackNotifier(None).send("✅ cam-07 within 0.5°")
    assert (outcome.delivered, outcome.attempts, outcome.error) == (False, 0, "no webhook configured")
    assert "✅ cam-07 within 0.5°" in capsys.readouterr().out


def test_resource_builds_a_notifier(webhook, monkeypatch):
    import dagster as dg

    monkeypatch.setenv("CALMON_TEST_SLACK_URL", webhook.url)

    @dg.asset
    def post(slack: SlackResource) -> None:
        assert slack.get_client().send("from dagster").delivered

    result = dg.materialize(
        [post], resources={"slack": SlackResource(webhook_url=dg.EnvVar("CALMON_TEST_SLACK_URL"), max_attempts=2)}
    )
    assert result.success
    assert webhook.texts() == ["from dagster"]


def test_resource_reads_the_named_variable_when_no_url_is_configured(webhook, monkeypatch, capsys):
    monkeypatch.setenv("CALMON_TEST_SLACK_URL", webhook.url)
    assert SlackResource(webhook_env_var="CALMON_TEST_SLACK_URL").get_client().send("via env").delivered
    monkeypatch.delenv("CALMON_TEST_SLACK_URL")
    outcome = SlackResource(webhook_env_var="CALMON_TEST_SLACK_URL").get_client().send("echoed")
    assert outcome.error == "no webhook configured" and "echoed" in capsys.readouterr().out
    assert webhook.texts() == ["via env"]
