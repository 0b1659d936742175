"""The flow that the event-source integration tests trigger from other buses."""

from triggers import trigger


@trigger(event="order_placed")
def take_order(order: str = "", amount: int = 0) -> None:
    print(f"order {order}: {amount}")
