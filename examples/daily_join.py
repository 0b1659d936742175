"""Join two loads of the same day, and flag big payments once approved or waived.

tripwire publish orders_loaded -p date=2026-11-23 -p rows=120
tripwire publish customers_loaded -p date=2026-11-23 -p rows=7   # fires daily_join
tripwire publish payment -p amount=250 && tripwire publish approved   # fires big_payment
tripwire sensors status                                           # what each one holds
"""

from triggers import current, trigger


@trigger(
    events=[
        {"name": "orders_loaded", "parameters": {"orders": "rows", "date": "date"}},
        {"name": "customers_loaded", "parameters": {"customers": "rows"}},
    ],
    within="1h",
    correlate_by="$.date",
)
def daily_join(date: str = "", orders: int = 0, customers: int = 0) -> None:
    print(f"run {current.run_name}: joining {orders} orders and {customers} customers of {date}")


@trigger(
    events=[
        {"name": "payment", "filters": ["$.amount >= 100"]},
        "approved",
        {"name": "manual.waiver", "dep": "waived"},
    ],
    conditions="payment && (approved || waived)",
)
def big_payment(amount: float = 0) -> None:
    contributed = [e.dependency for e in current.events]
    print(f"run {current.run_name}: payment of {amount} cleared by {contributed}")


if __name__ == "__main__":
    daily_join(date="2026-11-23", orders=1, customers=2)
    big_payment(amount=100)
