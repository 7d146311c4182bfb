"""The Stripe handler registry and the list of events we subscribe to are written
separately and must agree; the import-time check says how they differ."""
from __future__ import annotations

import pytest

from lib.billing.events import ENABLED_EVENTS, HANDLERS, Handler, check_registry


def test_the_registry_and_the_subscription_agree():
    check_registry(HANDLERS, ENABLED_EVENTS)
    assert set(HANDLERS) == set(ENABLED_EVENTS)


@pytest.mark.parametrize(("handlers", "enabled", "says"), [
    ({**HANDLERS, "invoice.voided": Handler("invoice")}, ENABLED_EVENTS, "handled without a subscription ['invoice.voided']"),
    ({k: v for k, v in HANDLERS.items() if k != "invoice.paid"}, ENABLED_EVENTS, "subscribed without a handler ['invoice.paid']"),
    ({**HANDLERS, "invoice.paid": Handler("refund")}, ENABLED_EVENTS, "unknown kinds {'invoice.paid': 'refund'}"),
])
def test_a_registry_out_of_step_fails_naming_the_difference(handlers, enabled, says):
    with pytest.raises(RuntimeError, match=r"out of step") as exc:
        check_registry(handlers, enabled)
    assert says in str(exc.value)
