"""ISO 4217 currency codes (from the `iso4217` data package) and their minor units."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Final

from iso4217 import Currency

DEFAULT_CURRENCY: Final = "EUR"


@cache
def minor_units() -> dict[str, int]:
    """Return the decimals of every currency that has them (funds and metals have none)."""
    # Codes without minor units (gold XAU, the IMF's XDR, the testing and "no currency"
    # codes) are not money one prices an item in, so they are not offered.
    return {c.code: c.exponent for c in Currency if c.exponent is not None}


@cache
def whole_currencies() -> frozenset[str]:
    """Return the currencies without minor units (JPY, KRW, ...): their prices are whole."""
    return frozenset(code for code, units in minor_units().items() if units == 0)


def check_currency(code: str) -> str:
    """Return ``code`` if it is an ISO 4217 currency; raise ValueError otherwise."""
    if code not in minor_units():
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


def price_fits(price: Decimal, currency: str) -> bool:
    """Whether ``price`` has no more decimals than ``currency`` uses (JPY: none)."""
    units = minor_units().get(currency, 2)
    # Trailing zeros do not count: 500.00 JPY is 500 JPY.
    exponent = price.normalize().as_tuple().exponent
    return not isinstance(exponent, int) or -exponent <= units
