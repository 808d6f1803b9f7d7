"""Check digits of the identifiers the recognizers find: a number that fails its checksum
is a look-alike (an order number, a reference) and is left alone.
"""

from __future__ import annotations

from datetime import date

# GB 11643-1999: weights of the first 17 digits of a resident ID, and the check character
# for each remainder of the weighted sum modulo 11.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# First two digits of a resident ID: the province-level division.
_ID_PROVINCES = {
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
    50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91,
}

# GB 32100-2015: the unified social credit code's alphabet (no I, O, S, V, Z) and weights;
# its characters 9 to 17 are an organisation code with a GB 11714 check character of its own.
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of bank and credit card numbers."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def cn_id_check_char(first17: str) -> str:
    """The 18th character of a resident ID number, from its first 17 digits."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS)) % 11]


def cn_id_valid(number: str) -> bool:
    """An 18-digit resident ID (province, birth date, check character) or the old 15-digit form."""
    number = number.upper()
    if len(number) == 18:
        body, birth = number[:17], number[6:14]
        if not body.isdigit() or cn_id_check_char(body) != number[17]:
            return False
    elif len(number) == 15 and number.isdigit():
        birth = "19" + number[6:12]
    else:
        return False
    return int(number[:2]) in _ID_PROVINCES and _is_past_date(birth)


def uscc_check_char(first17: str) -> str:
    """The 18th character of a unified social credit code, from its first 17."""
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def org_code_check_char(first8: str) -> str:
    """The check character of a GB 11714 organisation code (digits and letters A=10...Z=35)."""
    remainder = 11 - sum(int(c, 36) * w for c, w in zip(first8, _ORG_WEIGHTS)) % 11
    return {10: "X", 11: "0"}.get(remainder, str(remainder))


def uscc_valid(code: str) -> bool:
    """A unified social credit code: alphabet, area digits, both check characters."""
    code = code.upper()
    return (len(code) == 18 and all(c in _USCC_ALPHABET for c in code) and code[2:8].isdigit()
            and org_code_check_char(code[8:16]) == code[16] and uscc_check_char(code[:17]) == code[17])


def _is_past_date(yyyymmdd: str) -> bool:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= date.today()
