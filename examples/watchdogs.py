"""Beyond all-of: counts, missing events, ordered steps, wildcards and debounce.

tripwire dev examples/watchdogs.py
tripwire publish order_failed -p customer=acme -p order=1     # 3 of these in 10 min
tripwire publish extract_done -p batch=b1 && tripwire publish validate_done -p batch=b1
tripwire publish orders.eu.created -p region=eu
tripwire sensors status      # counts, sequence positions, absence deadlines
"""

from triggers import current, trigger


@trigger(event="order_failed", threshold=3, within="10m", correlate_by="$.customer")
def escalate_customer(customer: str = "", order: int = 0) -> None:
    # The parameters come from the third failure; current.event_ids has all three.
    print(f"{customer}: {current.count} failed orders {list(current.event_ids)}, last {order}")


@trigger(absent="data_updated", within="24h", tz="Europe/Berlin")
def daily_load_missing() -> None:
    # Once per Berlin calendar day in which no data_updated arrived.
    window = current.window
    print(f"no data_updated between {window[0]} and {window[1]}" if window else "no window")


@trigger(absent="load_finished", after="load_started", within="2h", correlate_by="$.day")
def load_overdue(day: str = "") -> None:
    # A load_started (for a day) that no load_finished (same day) followed within 2 h.
    print(f"the load of {day} started but has not finished")


@trigger(sequence=["extract_done", "validate_done"], within="1h")
def publish_validated(batch: str = "") -> None:
    print(f"{batch} was extracted, then validated")


@trigger(event="orders.*", debounce="30s")
def refresh_orders_view(region: str = "") -> None:
    # Any orders.<something> event; a burst becomes one run once 30 s pass quietly.
    print(f"refreshing after {len(current.coalesced_event_ids)} order events (last: {region})")


if __name__ == "__main__":
    escalate_customer(customer="acme")  # outside a run: plain Python, current is empty
    daily_load_missing()
    load_overdue(day="2026-11-23")
    publish_validated(batch="b1")
    refresh_orders_view(region="eu")
