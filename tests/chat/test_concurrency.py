"""100 parallel requests against a balance that affords 10."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.chat import chat_body


def test_parallel_requests_never_overspend_and_charge_exactly_the_successes(stack):
    owner = stack.user("owner")
    org = stack.team(owner)
    key = stack.key(owner, org)["key"]
    stack.set_balance(org, 10)  # each of these requests holds (and costs) 1 credit
    stack.upstream.latency_ms = 50  # keep reservations in flight at the same time

    def call(i: int) -> int:
        r = httpx.post(f"{stack.base}/v1/chat/completions", json=chat_body(f"request {i}", max_tokens=4),
                       headers={"authorization": f"Bearer {key}"}, timeout=60)
        return r.status_code

    with ThreadPoolExecutor(max_workers=25) as pool:
        statuses = list(pool.map(call, range(100)))

    ok, refused = statuses.count(200), statuses.count(402)
    assert ok + refused == 100, f"only 200 and 402 expected: {sorted(set(statuses))}"
    rows = stack.usage(org)
    charged = sum(r["credits"] for r in rows)
    assert ok == 10, f"exactly the affordable 10 succeed, got {ok}"
    assert len(rows) == ok and all(r["status"] == "succeeded" for r in rows)
    assert stack.balance(org) == 10 - charged == 0, "charged exactly the successful ones, never below zero"
    stack.assert_ledger_consistent(org)
    open_holds = stack.sql.execute("select count(*) from credit_reservations where org_id = %s and status = 'open'", (org,)).fetchone()[0]
    assert open_holds == 0
