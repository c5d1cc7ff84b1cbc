"""Certificate expiry warnings at start: a configured PEM certificate that has expired, or
expires within CERT_WARN_DAYS, is named in one warning line. Stdlib only (ssl decodes the
certificate); a file that cannot be read is left to the TLS setup to report.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.config import Settings

log = logging.getLogger(__name__)
CERT_WARN_DAYS = 14
SERVER_CERTS = ("tls_cert_file", "tls_client_ca_file")  # checked by the server role
CLIENT_CERTS = ("tls_ca_file", "tls_client_cert_file")  # checked by the built-in worker


def not_after(path: str) -> float:
    """The certificate's expiry (seconds since the epoch); the first one of a PEM bundle."""
    decode: Any = getattr(ssl, "_ssl")._test_decode_cert  # noqa: B009 - no public API for it
    return float(ssl.cert_time_to_seconds(decode(path)["notAfter"]))


def expiry_warnings(
    settings: Settings, names: tuple[str, ...] = SERVER_CERTS, now: float | None = None
) -> list[str]:
    """One line per configured certificate (of the settings `names`) that has expired or
    expires within 14 days."""
    now = time.time() if now is None else now
    lines = []
    for name in names:
        path = getattr(settings, name)
        if not path:
            continue
        try:
            expires = not_after(path)
        except (OSError, ssl.SSLError, KeyError, ValueError):
            continue
        days = (expires - now) / 86_400
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        if days < 0:
            lines.append(f"{name}: the certificate in {path} expired at {stamp}")
        elif days < CERT_WARN_DAYS:
            lines.append(
                f"{name}: the certificate in {path} expires at {stamp}, in {days:.1f} days"
            )
    return lines


def warn_expiring(settings: Settings, names: tuple[str, ...] = SERVER_CERTS) -> None:
    for line in expiry_warnings(settings, names):
        log.warning("%s", line)
