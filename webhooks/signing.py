"""Standard Webhooks signatures (https://www.standardwebhooks.com/), made with the `standardwebhooks`
package: the receiver verifies with the same package (or a few lines of HMAC) and its secret."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook


def signature_headers(*, msg_id: str, body: str, secrets: Sequence[str], timestamp: datetime) -> dict[str, str]:
    """webhook-id, webhook-timestamp and webhook-signature for this exact body. Several secrets (during a
    rotation) give several space-separated signatures; a receiver accepts the message when any matches."""
    if not secrets:
        raise ValueError("a webhook is always signed: no secret given")
    # standardwebhooks reads the timestamp's wall clock as UTC: hand it UTC.
    at = timestamp.astimezone(UTC)
    signatures = " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())), "webhook-signature": signatures}
