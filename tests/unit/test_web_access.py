"""Who may read ``/accounts/*`` (streams.web.refusal), on aiohttp's own request objects."""

from aiohttp.test_utils import make_mocked_request

from streams.web import refusal

TOKEN = "unit-test-api-token-0123456789"


def request(remote: str, authorization: str | None = None):
    headers = {"Authorization": authorization} if authorization else {}
    return make_mocked_request("GET", "/accounts/a-1", headers=headers).clone(remote=remote)


def test_with_a_token_only_its_bearer_may_read_from_anywhere():
    assert refusal(request("10.1.2.3", f"Bearer {TOKEN}"), TOKEN) is None
    assert refusal(request("10.1.2.3", f"bearer {TOKEN}"), TOKEN) is None
    for auth in (None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN):
        for remote in ("10.1.2.3", "127.0.0.1"):  # loopback is no excuse once a token is set
            status, why = refusal(request(remote, auth), TOKEN)
            assert status == 401 and "bearer token is required" in why


def test_without_a_token_only_loopback_clients_may_read_and_others_are_told_why():
    assert refusal(request("127.0.0.1"), "") is None
    assert refusal(request("::1"), "") is None
    status, why = refusal(request("192.168.1.20", f"Bearer {TOKEN}"), "")
    assert status == 403 and "no CHURNWATCH_API_TOKEN is configured" in why
