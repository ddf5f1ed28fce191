"""The webhook URL is the secret: no form of it (path, query, user:pass@, escaped) reaches an error or stdout."""

from __future__ import annotations

import pytest

from resources.slack import SlackNotifier
from tests.servers import ScriptedWebhook


@pytest.fixture
def webhook():
    receiver = ScriptedWebhook()
    yield receiver
    receiver.stop()


def base(webhook: ScriptedWebhook) -> str:
    return webhook.url.split("/services/")[0]


MALFORMED = {
    "space in path": "{base}/services/T0SECRET/B0 SECRET/xoxSECRETtoken",
    "newline in path": "{base}/services/T0SECRET/B0\nSECRET/xoxSECRETtoken",
    "space in query": "{base}/services/T0/B0/x?token=Q SECRET",
    "user:pass@": "http://hookuser:pwSECRET@{hostport}/services/T0SECRET/B0SECRET/xoxSECRETtoken",
    "user:pass@ no port": "http://hookuser:pwSECRET@127.0.0.1/services/T0SECRET/B0SECRET/x",
    "no scheme": "{hostport}/services/T0SECRET/B0SECRET/xoxSECRETtoken",
    "bad scheme": "htps://{hostport}/services/T0SECRET/B0SECRET/xoxSECRETtoken",
    "bad port": "http://127.0.0.1:99999/services/T0SECRET/B0SECRET/xoxSECRETtoken",
    "broken ipv6 host": "http://[::1/services/T0SECRET/B0SECRET/xoxSECRETtoken",
}


@pytest.mark.parametrize("form", sorted(MALFORMED))
def test_a_malformed_webhook_url_is_refused_without_showing_it(webhook, capsys, form):
    url = MALFORMED[form].format(base=base(webhook), hostport=base(webhook).removeprefix("http://"))
    outcome = SlackNotifier(url, max_attempts=2, backoff_seconds=0.01, timeout=2).send("hello")
    assert not outcome.delivered and outcome.error
    assert not outcome.worth_retrying_later  # a configuration error: retrying will not help
    out = capsys.readouterr()
    for text in (outcome.error, out.out, out.err):
        assert "SECRET" not in text and "hookuser" not in text
    assert "webhook URL" in outcome.error
    assert webhook.requests == []  # nothing was sent anywhere (no DNS query with the password in it)


def test_a_proxy_error_page_quoting_the_path_and_query_is_scrubbed(webhook):
    webhook.script = [(502, {})] * 3
    url = webhook.url + "?token=QSECRETq&x=1"
    outcome = SlackNotifier(url, max_attempts=2, backoff_seconds=0.01).send("hello")
    assert not outcome.delivered and outcome.status == 502 and "bad gateway" in outcome.error
    assert "SECRET" not in outcome.error and "<webhook>" in outcome.error


def test_a_percent_encoded_path_is_scrubbed_in_both_spellings(webhook):
    webhook.script = [(502, {})]
    url = base(webhook) + "/services/T0%53ECRET/B0SECRET/xox%20SECRET"
    outcome = SlackNotifier(url, max_attempts=1).send("hello")
    assert outcome.status == 502
    assert "SECRET" not in outcome.error and "%53ECRET" not in outcome.error
