"""Signing the instance id (core/signing.py) as nova checks it."""

import hashlib
import hmac

from ovnmeta.core.signing import sign_instance_id, signature_valid


def test_signature_is_hmac_sha256_hex() -> None:
    expected = hmac.new(b"secret", b"inst-a", hashlib.sha256).hexdigest()
    assert sign_instance_id("secret", "inst-a") == expected
    assert signature_valid("secret", "inst-a", expected)
    assert not signature_valid("other", "inst-a", expected)
    assert not signature_valid("secret", "inst-a", "")
