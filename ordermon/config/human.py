"""How ordermon writes for a person: counts with their noun in the right number."""


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 attempt``, ``2 attempts``, ``0 attempts``; ``nouns`` when the plural is not
    ``noun`` + "s" (``1 delivery``, ``3 deliveries``)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"
