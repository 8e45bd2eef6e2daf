"""SMTPKIT = {"signer": DKIMSigner(...)}: Django's mail goes out DKIM-signed."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, get_connection
from django.test.utils import override_settings

from smtpkit.contrib.dkim import DKIMSigner

from ..dkimkeys import DOMAIN, SELECTOR, ed25519_key, verify
from . import modes

pytestmark = modes.LEGACY


def test_a_signer_in_smtpkit_signs_every_message(server):
    key = ed25519_key()
    signer = DKIMSigner.from_pem(key.pem, domain=DOMAIN, selector=SELECTOR)
    with override_settings(SMTPKIT={"timeout": 5.0, "signer": signer}):
        backend = get_connection()
        assert get_connection().mailer is backend.mailer  # one shared pool
        message = EmailMessage("S", "B", "from@example.com", ["to@example.com"])
        assert backend.send_messages([message]) == 1
    [received] = server.messages
    assert verify(received.data, key)


def test_something_that_is_no_signer_is_refused(server):
    with (
        override_settings(SMTPKIT={"timeout": 5.0, "signer": "dkim.key"}),
        pytest.raises(ImproperlyConfigured, match="signer= takes an object"),
    ):
        get_connection()
    assert server.messages == []
