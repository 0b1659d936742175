"""Multi-event flows the integration tests deploy."""

from triggers import trigger


@trigger(
    events=[
        {"name": "orders_loaded", "parameters": {"orders": "rows", "date": "date"}},
        {"name": "customers_loaded", "parameters": {"customers": "rows", "date": "date"}},
    ],
    correlate_by="$.date",
    within="1h",
)
def daily_join(date: str = "", orders: int = 0, customers: int = 0) -> None: ...


@trigger(
    events=[
        {"name": "payment", "filters": ["$.amount >= 100"]},
        "approved",
        "waived",
    ],
    conditions="payment && (approved || waived)",
)
def big_payment(amount: float = 0) -> None: ...
