"""Which fields of one entity type each rule reads, from the keys its entities have."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from ..entities import id_fields
from .rules import (
    CODE_FIELDS,
    DATE_FIELDS,
    EVENT_FIELDS,
    GENDER_FIELDS,
    IDENTIFIER_FIELDS,
    NUMBER_FIELDS,
    OWN_KEYS,
    REFERENCES,
    SPANS,
)

__all__ = ["PLAIN_KEY", "TypePlan", "plan_type"]

# Keys read as paths must be plain names (they go into SQL path literals of both engines).
PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,100}")
# Other top-level fields tested for being mostly dates, at most (the first by name).
_MAX_CANDIDATES = 40
# Object fields whose known members are read too.
_NESTED = {"contact": IDENTIFIER_FIELDS, "period": {"": frozenset({"start", "end"})}}


@dataclass
class TypePlan:
    """The paths of one type to read (``paths[i]`` becomes columns ``k{i}``/``t{i}``) and
    what each rule applies to, by path name (``contact.phone``)."""

    entity_type: str
    paths: list[tuple[str, ...]] = field(default_factory=list)
    own_ids: list[str] = field(default_factory=list)  # id fields present, in id_fields order
    dates: list[str] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)  # maybe dates (decided by their values)
    numbers: list[str] = field(default_factory=list)
    genders: list[str] = field(default_factory=list)
    codes: dict[str, list[str]] = field(default_factory=dict)
    identifiers: dict[str, list[str]] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)
    spans: list[tuple[str, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    code_systems: list[str] = field(default_factory=list)  # the fields naming the code system of ``code``
    verify: list[str] = field(default_factory=list)  # keys whose presence is counted (see run.py)

    def column(self, name: str) -> tuple[str, str]:
        """The (kind, text) columns of a path name, read once however often used."""
        path = tuple(name.split("."))
        if path not in self.paths:
            self.paths.append(path)
        i = self.paths.index(path)
        return f"k{i}", f"t{i}"


def plan_type(entity_type: str, keys: list[str], strings: Collection[str] | None = None) -> TypePlan:
    """The plan of a type whose entities have the top-level ``keys``.

    Args:
        strings: the keys that hold a string in some entity (of those whose keys these
            are), when known: a key that never does cannot be mostly dates, so it is no
            candidate (its date checks would only cost planning the statement)."""
    plan = TypePlan(entity_type)
    plain = sorted(k for k in keys if PLAIN_KEY.fullmatch(k))
    present = set(plain)
    for parent, members in _NESTED.items():
        if parent in present:
            present |= {f"{parent}.{m}" for names in members.values() for m in names}
    plan.own_ids = [f for f in id_fields(entity_type) if f in present]
    if entity_type == "patients" and "mrn" in present:
        plan.own_ids.append("mrn")
    plan.dates = sorted(present & DATE_FIELDS)
    plan.numbers = sorted(present & NUMBER_FIELDS)
    plan.genders = sorted(present & GENDER_FIELDS)
    for rule, names in CODE_FIELDS.items():
        if found := sorted(present & names):
            plan.codes[rule] = found
    if entity_type == "diagnoses" and "code" in present:
        plan.codes.setdefault("malformed_icd10", []).append("code")
        plan.code_systems = [f for f in ("code_system", "system") if f in present]
    for rule, names in IDENTIFIER_FIELDS.items():
        found = sorted(p for p in present if p.rpartition(".")[2] in names and p.partition(".")[0] in (p, "contact"))
        if found:
            plan.identifiers[rule] = found
    own = set(id_fields(entity_type)) | OWN_KEYS.get(entity_type, frozenset())
    plan.references = sorted(f for f in present & set(REFERENCES) if f not in own and REFERENCES[f][0] != entity_type)
    plan.spans = [(a, b) for a, b in SPANS if a in present and b in present]
    if {"patient_mrn", "patient_id"} & set(plan.references):
        plan.events = [f for f in EVENT_FIELDS if f in present]
    known = DATE_FIELDS | NUMBER_FIELDS | GENDER_FIELDS | set(REFERENCES) | set(plan.own_ids)
    known |= {n for names in (*CODE_FIELDS.values(), *IDENTIFIER_FIELDS.values()) for n in names}
    # (those that never hold a string are set aside before the cut: 40 fields of numbers
    # named before a date field kept it from being checked)
    plan.candidates = [k for k in plain if k not in known and k != "code" and (strings is None or k in strings)]
    del plan.candidates[_MAX_CANDIDATES:]
    return plan
