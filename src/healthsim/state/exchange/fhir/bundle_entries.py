"""A Bundle's entries as the FHIR import reads them: its type checked, each entry an
object holding a resource, and its references resolved inside it.

A transaction's ``urn:uuid:`` references must name an entry; a reference to an entry's
``fullUrl`` comes to name its resource (``Type/id``), and a conditional reference
(``Patient?identifier=sys|x``) the one resource of the Bundle it matches, as a server
would. A nested Bundle's references name its own entries and are left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import InvalidScenarioFileError
from .refs import conditional_identifier

__all__ = [
    "bundle_entries",
    "check_bundle_type",
    "check_references",
    "problem",
    "resolve_conditionals",
    "resolve_full_urls",
]


def problem(path: Path, where: str, what: str) -> InvalidScenarioFileError:
    """The error of a file's place: ``{where}: {what}`` of ``path``."""
    return InvalidScenarioFileError(path, f"{where}: {what}")


# Bundle types whose entries are resources to import ("type" missing: read as a collection).
_POPULATIONS = ("transaction", "batch", "collection", "searchset", "document", "message", None)
_NOT_POPULATIONS = {
    "history": "a history Bundle holds versions of resources (and deletions), not one population",
    "transaction-response": "a response Bundle says what a server did with a transaction, not its resources",
    "batch-response": "a response Bundle says what a server did with a batch, not its resources",
}


def check_bundle_type(path: Path, kind: Any) -> None:
    """Refuse a Bundle whose entries are no population of resources.

    Raises:
        InvalidScenarioFileError: a history or response Bundle, or no Bundle type of FHIR.
    """
    if kind in _POPULATIONS:
        return
    what = "import the current resources instead (a searchset, a collection or a Bulk export)"
    if isinstance(kind, str) and kind in _NOT_POPULATIONS:
        raise problem(path, "the Bundle", f"{_NOT_POPULATIONS[kind]}; {what}")
    raise problem(
        path,
        "the Bundle",
        f"its type {kind!r:.40} is not a Bundle type this import reads ({', '.join(_POPULATIONS[:-1])})",
    )


def bundle_entries(path: Path, bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """The Bundle's entries, each an object holding a resource.

    Raises:
        InvalidScenarioFileError: ``entry`` is not a list, or an entry is not an object or
            holds no resource.
    """
    entries = bundle.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise problem(path, "the Bundle", f"its entry is a {type(entries).__name__}, not a list of entries")
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise problem(
                path,
                f"entry {position}",
                f"not an object but {entry!r:.40}; an entry holds its resource under 'resource'",
            )
        if "resource" not in entry:
            raise problem(
                path,
                f"entry {position}",
                "has no resource (a request or response alone); every entry of a Bundle to import holds one",
            )
    return entries


def check_references(path: Path, entries: list[dict[str, Any]]) -> None:
    """Every ``urn:uuid:`` reference of a transaction must name an entry's fullUrl."""
    known = {e.get("fullUrl") for e in entries}
    for position, entry in enumerate(entries):
        for target in (ref["reference"] for ref in _reference_objects(entry.get("resource"))):
            if target.startswith("urn:") and target not in known:
                raise problem(
                    path,
                    f"entry {position}",
                    f"the reference {target!r} resolves to no entry of this transaction bundle",
                )


def _full_url_id(full_url: str) -> str:
    """The logical id a fullUrl ends in (``urn:uuid:x``, ``urn:oid:x``, ``http://…/Patient/x``)."""
    for prefix in ("urn:uuid:", "urn:oid:"):
        if full_url.startswith(prefix):
            return full_url[len(prefix) :]
    return full_url.rsplit("/", 1)[-1]


def resolve_full_urls(entries: list[dict[str, Any]]) -> None:
    """Make the references to an entry's ``fullUrl`` name its resource's id.

    The reading takes the id a reference ends in as the target's own id, which holds when
    the fullUrl ends in the resource's id (Synthea's bundles). A transaction of POSTs has
    resources without ids, named only by ``urn:uuid:`` fullUrls: such a resource takes the
    fullUrl's id; a reference to a fullUrl that ends in another id than its resource's is
    rewritten to ``Type/id``.
    """
    moved: dict[str, str] = {}
    for entry in entries:
        full_url, resource = entry.get("fullUrl"), entry.get("resource")
        if not isinstance(full_url, str) or not isinstance(resource, dict):
            continue
        own = _full_url_id(full_url)
        if "id" not in resource and own:
            resource["id"] = own
        if resource.get("id") != own and isinstance(resource.get("resourceType"), str):
            moved[full_url] = f"{resource['resourceType']}/{resource.get('id')}"
    if not moved:
        return
    for entry in entries:
        for ref in _reference_objects(entry.get("resource")):
            ref["reference"] = moved.get(ref["reference"], ref["reference"])


def _identified(entries: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[str | None, str]]]:
    """``(resource type, identifier value)`` → ``(system, id)`` of each resource of the Bundle."""
    found: dict[tuple[str, str], list[tuple[str | None, str]]] = {}
    for entry in entries:
        resource = entry["resource"]
        identifiers = resource.get("identifier")
        if not isinstance(identifiers, list) or not isinstance(resource.get("id"), str):
            continue
        for ident in identifiers:
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                key = (str(resource["resourceType"]), ident["value"])
                found.setdefault(key, []).append((ident.get("system"), resource["id"]))
    return found


def resolve_conditionals(path: Path, entries: list[dict[str, Any]]) -> None:
    """Make a conditional reference (``Patient?identifier=sys|x``) that matches one resource
    of the Bundle name it (``Patient/id``), as a server would; one matching none keeps its
    identifier (the reading takes it as the own id).

    Raises:
        InvalidScenarioFileError: a conditional reference matches several resources.
    """
    index = _identified(entries)
    for position, entry in enumerate(entries):
        for ref in _reference_objects(entry["resource"]):
            text = ref["reference"]
            searched = conditional_identifier(text) if "?" in text else None
            if searched is None:
                continue
            system, value = searched
            kind = text.split("?", 1)[0]
            ids = {rid for sys, rid in index.get((kind, value), []) if system is None or sys == system}
            if len(ids) > 1:
                raise problem(
                    path,
                    f"entry {position}",
                    f"the conditional reference {text!r:.120} matches {len(ids)} resources of this Bundle "
                    f"({', '.join(sorted(ids)[:5])}); it must match one: give their identifiers apart",
                )
            if ids:
                ref["reference"] = f"{kind}/{ids.pop()}"


def _reference_objects(value: Any) -> Iterator[dict[str, Any]]:
    """The objects with a text ``reference`` in a resource (not in a nested Bundle: its
    references name its own entries)."""
    if isinstance(value, dict):
        if value.get("resourceType") == "Bundle":
            return
        if isinstance(value.get("reference"), str):
            yield value
        for item in value.values():
            yield from _reference_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _reference_objects(item)
