"""SQL expressions of the rules, over a field's kind ``k`` and text ``t`` columns (see
:meth:`~healthsim.state._engines.base.Engine.json_fields`).

Written once for both engines: plain ``substr``/``CAST``/``CASE`` arithmetic (check
digits, days of the month) and regular expressions through :meth:`~healthsim.state._engines.base.Engine.matches`;
what cannot be written alike (parsing the JSON, timestamps) is asked of the engine.
Every expression is true for a value that breaks its rule, and false or NULL otherwise
(an absent value or JSON null breaks none).
"""

from __future__ import annotations

from .._engines import Connection
from .rules import GENDERS

__all__ = [
    "ref_text",
    "bad_date",
    "bad_gender",
    "bad_icd10",
    "bad_loinc",
    "bad_ndc",
    "bad_npi",
    "bad_number",
    "day_before",
    "earlier",
    "is_date",
    "is_partial_date",
    "real_email",
    "real_phone",
    "real_ssn",
]

# ISO 8601 date, or date and time (``T`` or space), seconds and fraction optional, then
# ``Z`` or an offset: one pattern checks it all, the days of each month too (29 February
# only in years divisible by 4 and not by 100, or by 400). One pattern, not a pattern and
# calendar arithmetic of the day: a check's statements hold a date check for every date
# field, often several times, and DuckDB took 1.3 ms to plan each arithmetic, 0.4 ms
# the pattern (a large check spent a fifth of its time planning).
_TIME = "([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,9})?)?(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?)?"
_DAY = (
    "([0-9]{4}-((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|(0[469]|11)-(0[1-9]|[12][0-9]|30)|02-(0[1-9]|1[0-9]|2[0-8]))"
    "|([0-9]{2}(0[48]|[2468][048]|[13579][26])|([02468][048]|[13579][26])00)-02-29)"
)
_ISO = f"^{_DAY}{_TIME}$"
# Also a year, or a year and month, alone (FHIR dates may be).
_ISO_OR_PARTIAL = f"^({_DAY}{_TIME}|[0-9]{{4}}(-(0[1-9]|1[0-2]))?)$"
_PARTIAL = "^[0-9]{4}(-(0[1-9]|1[0-2]))?$"
_ICD10 = "^[A-Z][0-9][0-9A-Z](\\.?[0-9A-Z]{1,4})?$"
_NDC = "^([0-9]{4}-[0-9]{4}-[0-9]{2}|[0-9]{5}-[0-9]{3}-[0-9]{2}|[0-9]{5}-[0-9]{4}-[0-9]{1,2}|[0-9]{10,11})$"
_NUMBER = "^ *-?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)? *$"
_EMAIL_SAFE = (
    "@(.+\\.)?(example\\.(com|org|net)|[^@]*\\.(test|example|invalid|localhost)|test|example|invalid|localhost)$"
)


def _digit(text: str, i: int | str) -> str:
    return f"CAST(substr({text}, {i}, 1) AS INTEGER)"


def _doubled(text: str, i: int) -> str:
    """A Luhn-doubled digit: twice the digit, less 9 when that has two digits."""
    d = _digit(text, i)
    return f"(2 * {d} - CASE WHEN {d} >= 5 THEN 9 ELSE 0 END)"


def is_date(con: Connection, k: str, t: str, *, partial: bool = True) -> str:
    """SQL: ``t`` is an ISO 8601 date or datetime of a day that exists; with ``partial``,
    also a year or a year and month alone (``2012``, ``2012-05``: FHIR dates may be)."""
    pattern = con.engine.matches(t, _ISO_OR_PARTIAL if partial else _ISO)
    return f"(CASE WHEN {k} = 'string' AND substr({t}, 1, 4) <> '0000' AND {pattern} THEN true ELSE false END)"


def is_partial_date(con: Connection, k: str, t: str) -> str:
    """SQL: ``t`` is a year, or a year and month, alone (``2012``, ``2012-05``)."""
    pattern = con.engine.matches(t, _PARTIAL)
    return f"(CASE WHEN {k} = 'string' AND substr({t}, 1, 4) <> '0000' AND {pattern} THEN true ELSE false END)"


def bad_date(con: Connection, k: str, t: str) -> str:
    """SQL: a value that is not a date."""
    return f"({k} <> 'null' AND NOT {is_date(con, k, t)})"


def day_before(a: str, b: str) -> str:
    """SQL: the calendar day of the date ``a`` is before that of ``b`` (both valid dates,
    possibly partial: only the parts both have are compared, so ``2012`` is never before
    ``2012-05-01``)."""
    n = f"least(length({a}), length({b}), 10)"
    return f"(left({a}, {n}) < left({b}, {n}))"


def bad_number(con: Connection, k: str, t: str) -> str:
    """SQL: a value that is neither a JSON number nor a string of one."""
    return f"({k} NOT IN ('null', 'number') AND NOT ({k} = 'string' AND {con.engine.matches(t, _NUMBER)}))"


def bad_gender(k: str, t: str) -> str:
    """SQL: a value outside the accepted gender codes (any case)."""
    accepted = ", ".join(f"'{g}'" for g in GENDERS)
    return f"({k} <> 'null' AND NOT ({k} = 'string' AND lower({t}) IN ({accepted})))"


def bad_icd10(con: Connection, k: str, t: str) -> str:
    """SQL: not shaped like an ICD-10-CM code (letter, digit, letter or digit, then up to
    four more after an optional dot)."""
    return f"({k} <> 'null' AND NOT ({k} = 'string' AND {con.engine.matches(t, _ICD10)}))"


def bad_loinc(con: Connection, k: str, t: str) -> str:
    """SQL: not ``digits-check digit`` with LOINC's mod 10 check digit (Luhn over the
    digits, the rightmost one doubled; zeros padded on the left change nothing)."""
    body = f"lpad(split_part({t}, '-', 1), 7, '0')"
    total = " + ".join(_doubled(body, i) if i % 2 else _digit(body, i) for i in range(1, 8))
    valid = (
        f"CASE WHEN {k} = 'string' AND {con.engine.matches(t, '^[0-9]{1,7}-[0-9]$')} "
        f"THEN (10 - ({total}) % 10) % 10 = {_digit(t, f'length({t})')} ELSE false END"
    )
    return f"({k} <> 'null' AND NOT {valid})"


def bad_npi(con: Connection, k: str, t: str) -> str:
    """SQL: not 10 digits whose last is the Luhn check digit of the first nine with the
    prefix 80840 (which adds 24 to the sum)."""
    total = " + ".join(_doubled(t, i) if i % 2 else _digit(t, i) for i in range(1, 10))
    valid = (
        f"CASE WHEN {k} IN ('string', 'number') AND {con.engine.matches(t, '^[0-9]{10}$')} "
        f"THEN (10 - (24 + {total}) % 10) % 10 = {_digit(t, 10)} ELSE false END"
    )
    return f"({k} <> 'null' AND NOT {valid})"


def bad_ndc(con: Connection, k: str, t: str) -> str:
    """SQL: not an NDC in its 10-digit (4-4-2, 5-3-2, 5-4-1) or 11-digit (5-4-2) forms."""
    return f"({k} <> 'null' AND NOT ({k} IN ('string', 'number') AND {con.engine.matches(t, _NDC)}))"


# The digits of an identifier are read by patterns over its text, not by removing what is
# not a digit (``regexp_replace`` of every character: four times slower, and called twice).
# Between two digits any other characters may stand.
_GAP = "[^0-9]*"
_FICTION_PHONE = _GAP.join(["5", "5", "5", "0", "1", "[0-9]", "[0-9]"]) + _GAP + "$"


def real_ssn(con: Connection, k: str, t: str) -> str:
    """SQL: an SSN with digits whose first is not 9 (9xx numbers are never issued)."""
    return f"({k} IN ('string', 'number') AND {con.engine.matches(t, '^' + _GAP + '[0-8]')})"


def real_phone(con: Connection, k: str, t: str) -> str:
    """SQL: a phone number with digits whose last seven are not 555-01xx (reserved for
    fiction; fewer than seven digits are not)."""
    has_digit = con.engine.matches(t, "[0-9]")
    return f"({k} IN ('string', 'number') AND {has_digit} AND NOT {con.engine.matches(t, _FICTION_PHONE)})"


def real_email(con: Connection, k: str, t: str) -> str:
    """SQL: an e-mail address outside the reserved example domains (example.com/.org/.net,
    and .test, .example, .invalid, .localhost). Only text with an ``@`` is an address: a
    placeholder such as ``none`` or ``n/a`` could not reach anyone."""
    return f"({k} = 'string' AND {t} LIKE '%@%' AND NOT {con.engine.matches(f'lower({t})', _EMAIL_SAFE)})"


def earlier(con: Connection, later: tuple[str, str], early: tuple[str, str]) -> str:
    """SQL: the date ``later`` (kind, text) comes before the date ``early``, both valid
    dates. Two datetimes compare in time (offsets count); a date beside anything compares
    by the calendar day written, so a time on the same day is never called earlier."""
    (lk, lt), (ek, et) = later, early
    both = f"{is_date(con, lk, lt)} AND {is_date(con, ek, et)}"
    return (
        f"(CASE WHEN {both} THEN CASE WHEN length({lt}) > 10 AND length({et}) > 10 "
        f"THEN {con.engine.instant(_zoned(lt))} < {con.engine.instant(_zoned(et))} "
        f"ELSE {day_before(lt, et)} END ELSE false END)"
    )


def _zoned(t: str) -> str:
    """SQL: the valid datetime ``t`` with ``Z`` added when it has no offset, so that it is
    read as UTC (the engines read it in the session's time zone, the machine's by default).
    Its offset, if any, is after the date: a ``Z``, or a ``+`` or ``-`` past the tenth
    character (plain string functions: cheaper to plan and run than a pattern)."""
    offset = f"(right({t}, 1) = 'Z' OR strpos(substr({t}, 11), '+') > 0 OR strpos(substr({t}, 11), '-') > 0)"
    return f"(CASE WHEN {offset} THEN {t} ELSE {t} || 'Z' END)"


def ref_text(k: str, t: str) -> str:
    """SQL: the text an id or a reference (kind ``k``, text ``t``) is matched by: a
    string as it is, a JSON number in its plain form, so that numbers equal as numbers
    match (``1.0`` and ``1``, ``2.50`` and ``2.5``; an exponent form is kept as written).
    :func:`healthsim.state.entities.reference_text` is the same rule in Python."""
    fraction = f"regexp_replace({t}, '^(-?[0-9]+[.][0-9]*[1-9])0+$', '\\1')"
    whole = f"regexp_replace({fraction}, '^(-?[0-9]+)[.]0*$', '\\1')"
    return f"(CASE WHEN {k} = 'number' THEN {whole} ELSE {t} END)"
