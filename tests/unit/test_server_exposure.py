"""`orca server` bound beyond loopback without TLS warns, naming the risk."""

from __future__ import annotations

import pytest

from orca.control.server_main import exposure_warning
from orca.settings import ControlSettings, Settings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "::1", "localhost"])
def test_loopback_is_quiet(host: str) -> None:
    assert exposure_warning(host, Settings()) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "orca.internal"])
def test_beyond_loopback_without_tls_warns(host: str) -> None:
    warning = exposure_warning(host, Settings())
    assert warning is not None and host in warning and "without TLS" in warning and "tokens" in warning


def test_tls_or_a_tls_proxy_silences_it() -> None:
    assert exposure_warning("0.0.0.0", Settings(control=ControlSettings(tls_certfile="c.pem", tls_keyfile="k.pem"))) is None
    assert exposure_warning("0.0.0.0", Settings(control=ControlSettings(behind_tls_proxy=True))) is None
