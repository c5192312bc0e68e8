"""Settings refuse to start without a real token and parse their documented forms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.operator.settings import OperatorSettings
from controller.settings import Settings

TOKEN = "a-test-token-of-32-characters-ok"


def make(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_missing_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTH_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="auth_token"):
        make()


@pytest.mark.parametrize("token", ["short", "changeme", "CHANGEME", "x" * 15])
def test_weak_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        make(auth_token=token)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORT", "HOST", "MAX_CONCURRENT_EXECUTIONS", "WARM_SANDBOXES"):
        monkeypatch.delenv(name, raising=False)
    settings = make(auth_token="a" * 32)
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"
    assert settings.default_timeout_ms == 10_000
    assert settings.warm_pool_size == settings.max_concurrent_executions


def test_environment_is_read_when_constructed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_TOKEN", "b" * 20)
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("SANDBOX_EXTRA_RO_PATHS", "/opt/a, /opt/b")
    settings = make()
    assert settings.port == 9123
    assert settings.auth_token.get_secret_value() == "b" * 20
    assert settings.sandbox_extra_ro_paths == ("/opt/a", "/opt/b")
    assert "b" * 20 not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("port", 0),
        ("port", 70000),
        ("default_timeout_ms", 120_001),
        ("max_concurrent_executions", 0),
    ],
)
def test_out_of_range_settings_are_refused(name: str, value: int) -> None:
    with pytest.raises(ValidationError, match=name):
        make(auth_token="a" * 32, **{name: value})


def test_preload_takes_module_names_only() -> None:
    settings = make(auth_token="a" * 32, sandbox_preload="numpy, matplotlib.pyplot")
    assert settings.sandbox_preload == ("numpy", "matplotlib.pyplot")
    with pytest.raises(ValidationError, match="not a module name"):
        make(auth_token="a" * 32, sandbox_preload="os; import shutil")


def test_the_network_ceiling_is_read_and_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("NETWORK_ALLOWED_DOMAINS", "API.github.com, *.example.org,")
    monkeypatch.setenv("NETWORK_ALLOWED_PORTS", "443, 8443")
    monkeypatch.setenv("NETWORK_INTERNAL_HOSTS", "pypi.internal=10.0.0.5")
    settings = make()
    ceiling = settings.network_ceiling
    assert [str(p) for p in ceiling.allowed] == ["api.github.com", "*.example.org"]
    assert ceiling.ports == {443, 8443} and ceiling.allows_anything
    assert settings.network_internal_hosts == {"pypi.internal": "10.0.0.5"}
    assert not make(network_allowed_domains=()).network_ceiling.allows_anything


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("NETWORK_ALLOWED_DOMAINS", "*", "allows every name"),
        ("NETWORK_ALLOWED_DOMAINS", "github.com,*.com", "public suffix"),
        ("NETWORK_DENIED_DOMAINS", "10.0.0.1", "IP address"),
        ("NETWORK_ALLOWED_PORTS", "443,http", "not a port"),
        ("NETWORK_INTERNAL_HOSTS", "meta=169.254.169.254", "never a destination"),
        # What a session's agent and its BrowserSession accept (MAX_PATTERNS).
        ("NETWORK_DENIED_DOMAINS", ",".join(f"a{i}.ads.test" for i in range(1025)), "at most"),
        (
            "NETWORK_INTERNAL_HOSTS",
            ",".join(f"h{i}.test=10.0.0.1" for i in range(1025)),
            "at most 1024",
        ),
        ("NETWORK_DENIED_DOMAINS", "straße.de", "punycode"),
    ],
)
def test_bad_network_settings_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv("AUTH_TOKEN", TOKEN)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        make()
    assert caught.value.error_count() == 1
    assert name.lower() in str(caught.value) and says in str(caught.value)


def test_names_on_kubernetes_need_the_egress_proxy() -> None:
    with pytest.raises(ValidationError, match="EGRESS_PROXY and EGRESS_GRANT_KEY"):
        make(auth_token=TOKEN, backend="kubernetes", network_allowed_domains="api.github.com")
    ready = make(
        auth_token=TOKEN,
        backend="kubernetes",
        network_allowed_domains="api.github.com",
        egress_proxy="egress-proxy.sandbox.svc:3128",
        egress_grant_key="k" * 32,
    )
    assert ready.network_ceiling.allows_anything


@pytest.mark.parametrize(("sandbox", "browser"), [(63000, 63999), (64500, 64001), (64001, 64001)])
def test_sandbox_and_browser_uid_ranges_never_overlap(sandbox: int, browser: int) -> None:
    with pytest.raises(ValidationError, match="must not overlap"):
        Settings(auth_token=TOKEN, sandbox_uid=sandbox, browser_uid=browser)
    assert Settings(auth_token=TOKEN, sandbox_uid=sandbox, browser_uid=sandbox + 1000)


def documented_settings() -> dict[str, list[str]]:
    """Each setting named in the first column of a table of the settings' three pages."""
    root = Path(__file__).resolve().parents[2]
    found: dict[str, list[str]] = {}
    for page in (
        "docs/settings.md",
        "docs/browser.md",
        "docs/contexts.md",
        "docs/kubernetes.md",
    ):
        for line in (root / page).read_text().splitlines():
            if line.startswith("| `"):
                for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]):
                    found.setdefault(name, []).append(page)
    return found


def test_the_docs_name_every_setting_and_no_other() -> None:
    fields = {name.upper() for name in (*Settings.model_fields, *OperatorSettings.model_fields)}
    documented = documented_settings()
    assert sorted(fields - documented.keys()) == [], "settings the docs do not name"
    assert sorted(documented.keys() - fields) == [], "names the docs give that are no setting"
