"""Where the operator may send a Secret: its own flags, which a resource's author cannot override."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanup_operator.endpoints import (
    HOST_NOT_ALLOWED,
    INSECURE_HTTP,
    INSECURE_TLS,
    INVALID_URL,
    EndpointPolicy,
    EndpointRefused,
)

pytestmark = pytest.mark.unit


def refusal(policy: EndpointPolicy, url: str, skip_verify: bool = False) -> str | None:
    try:
        policy.check(url, insecure_skip_verify=skip_verify)
    except EndpointRefused as exc:
        return exc.reason
    return None


JFROG = EndpointPolicy(allowed_hosts=("*.jfrog.io", "artifactory.internal:8443"))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://acme.jfrog.io", None),
        ("https://acme.jfrog.io/artifactory-edge", None),
        ("https://ACME.JFROG.IO.", None),  # case and the root dot name the same host
        ("https://jfrog.io", HOST_NOT_ALLOWED),  # *.jfrog.io names subdomains only
        ("https://acme.jfrog.io.evil.example", HOST_NOT_ALLOWED),
        ("https://evil.example/acme.jfrog.io", HOST_NOT_ALLOWED),
        ("https://artifactory.internal:8443", None),
        ("https://artifactory.internal", HOST_NOT_ALLOWED),  # port 443 is not 8443
        ("https://artifactory.internal:9443", HOST_NOT_ALLOWED),
        ("http://acme.jfrog.io", INSECURE_HTTP),
        ("https://user:pw@acme.jfrog.io", INVALID_URL),
        ("https://acme.jfrog.io/?token=x", INVALID_URL),
        ("https://acme.jfrog.io/#frag", INVALID_URL),
        ("ftp://acme.jfrog.io", INVALID_URL),
        ("https://acme.jfrog.io:99999", INVALID_URL),
    ],
)
def test_allowed_hosts(url: str, reason: str | None) -> None:
    assert refusal(JFROG, url) == reason


def test_no_allowed_host_refuses_every_host() -> None:
    assert refusal(EndpointPolicy(), "https://acme.jfrog.io") == HOST_NOT_ALLOWED


def test_a_host_is_checked_before_the_scheme() -> None:
    """A refused host is said first: asking for --allow-insecure-http would not help it."""
    assert refusal(EndpointPolicy(), "http://acme.jfrog.io") == HOST_NOT_ALLOWED


def test_ipv6_and_ports() -> None:
    policy = EndpointPolicy(allowed_hosts=("[::1]:*", "127.0.0.1"), allow_insecure_http=True)
    assert refusal(policy, "http://[::1]:8081") is None
    assert refusal(policy, "http://127.0.0.1:8081/jfrog") is None
    assert refusal(policy, "http://127.0.0.2:8081") == HOST_NOT_ALLOWED


def test_insecure_flags() -> None:
    assert refusal(JFROG, "https://acme.jfrog.io", skip_verify=True) == INSECURE_TLS
    lax = EndpointPolicy(allowed_hosts=("*.jfrog.io",), allow_insecure_http=True, allow_insecure_tls=True)
    assert refusal(lax, "http://acme.jfrog.io", skip_verify=True) is None


def test_messages_name_the_flag_that_would_allow_it() -> None:
    for url, skip, flag in [
        ("https://other.example", False, "--allowed-hosts"),
        ("http://acme.jfrog.io", False, "--allow-insecure-http"),
        ("https://acme.jfrog.io", True, "--allow-insecure-tls"),
    ]:
        with pytest.raises(EndpointRefused, match=flag):
            JFROG.check(url, insecure_skip_verify=skip)


labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hosts = st.lists(labels, min_size=1, max_size=4).map(".".join)


@given(host=hosts, suffix=hosts)
def test_a_glob_never_allows_a_host_outside_its_domain(host: str, suffix: str) -> None:
    """``*.<domain>`` allows exactly the hosts that end in ``.<domain>``."""
    policy = EndpointPolicy(allowed_hosts=(f"*.{suffix}",))
    allowed = refusal(policy, f"https://{host}") is None
    assert allowed == host.endswith(f".{suffix}")


@given(host=hosts, extra=st.sampled_from(["?a=b", "#x", "/p?q", "@evil.example"]))
def test_no_url_with_query_fragment_or_user_info_passes(host: str, extra: str) -> None:
    url = f"https://{host}{extra}" if not extra.startswith("@") else f"https://user{extra}"
    assert refusal(EndpointPolicy(allowed_hosts=("*",)), url) == INVALID_URL
