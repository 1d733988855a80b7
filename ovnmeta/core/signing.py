"""The signature nova's metadata API checks: HMAC-SHA256 of the instance id, hex encoded."""

from __future__ import annotations

import hashlib
import hmac

from ovnmeta.core.memo import generational


@generational(limit=4096)  # the same few instances ask again and again
def sign_instance_id(secret: str, instance_id: str) -> str:
    return hmac.new(secret.encode(), instance_id.encode(), hashlib.sha256).hexdigest()


def signature_valid(secret: str, instance_id: str, signature: str) -> bool:
    """Constant-time check, as the server side must do it."""
    return hmac.compare_digest(sign_instance_id(secret, instance_id), signature or "")
