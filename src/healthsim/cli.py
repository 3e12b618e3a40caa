"""The ``healthsim`` command: scenarios from a terminal, over the same library calls.

Every command builds a :class:`~healthsim.state.ScenarioStore`, calls one library
operation and prints the result: tables for people, ``--json`` for scripts. Library errors
become one line on stderr and exit code 1; bad usage exits 2; nothing prints a traceback.
"""

# No ``from __future__ import annotations``: Typer reads every command's annotations at
# each start, and string annotations cost it an eval each (about 0.1 s for all commands).
import datetime as _dt
import functools
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from . import __version__
from ._text import safe_text
from .cli_choices import CHOICES, one_of
from .cli_pipes import PipeConsole, copy_out, output_cut, quiet_when_cut, write_out
from .state import ScenarioExistsError, ScenarioNotFoundError, StateError

if TYPE_CHECKING:
    from .state import QueryResult, ScenarioStore

# Start-up time: DuckDB, PyArrow, psycopg and the library's store are imported by the
# commands that use them (`store_of`), not here, so `healthsim --version` and `--help`
# answer at once (tests/test_cli.py checks which modules a bare start imports).

__all__ = ["CHOICES", "app", "main"]

EXAMPLES = """\b
Examples:
  healthsim save diabetes-cohort --from examples/diabetes-cohort.json --tag diabetes
  healthsim list --tag diabetes
  healthsim load diabetes-cohort
  healthsim add diabetes-cohort --from examples/batch-2.json
  healthsim history diabetes-cohort
  healthsim export diabetes-cohort -o /tmp/share/
  healthsim query "SELECT data->>'gender' AS gender, count(*) AS n FROM patients GROUP BY gender"
"""

app = typer.Typer(
    name="healthsim",
    help="Keep, find, share and query synthetic healthcare scenarios (HealthSim State).",
    epilog=EXAMPLES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# Piped output is not limited to 80 columns: names must come out whole for grep and scripts.
# Everything printed holds what users wrote (names, descriptions, tags, values, paths),
# which Rich would otherwise read as markup ("[/]" fails, "[red]" restyles) or emoji
# codes (":smile:"): both off, so text is shown as it is stored.
# A closed pipe (`| head`) ends the program quietly with exit 141 (cli_pipes).
out = PipeConsole(
    highlight=False, soft_wrap=True, markup=False, emoji=False, width=None if sys.stdout.isatty() else 160
)
err = PipeConsole(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]


def _describe(exc: BaseException) -> str:
    """``str(exc)`` as valid UTF-8 (lone surrogates escaped), even if its ``__str__`` fails."""
    try:
        return safe_text(str(exc))
    except Exception:
        return "(the error text could not be read)"


# A name clash's hint says what to pass to the library; at the terminal, the flag to type.
_FLAGS = (("pass overwrite=True", "pass --overwrite"), ("pass new_name", "pass --as NAME"))
_FORMAT_ARGUMENT = re.compile(r"\bformat='([a-z-]+)'")


# The library's hints name its functions and arguments; at the terminal, the command to type.
_TERMINAL_WORDS = (
    (
        "list the scenarios (list_scenarios, or healthsim list) to see which exist",
        "healthsim list shows the scenarios that exist",
    ),
    ("list_scenarios(deleted=True) shows the trash", "healthsim list --deleted shows the trash"),
    ("scenario_history lists", "healthsim history lists"),
    ("or purge_history", "or healthsim history --purge"),
)


def terminal_words(text: str, command: str) -> str:
    """An error's hint in the words of the terminal: ``healthsim list``, ``--check warn``,
    ``--format fhir`` instead of ``list_scenarios``, ``check='warn'``, ``format='fhir'``."""
    for library, terminal in _TERMINAL_WORDS:
        text = text.replace(library, terminal)
    text = text.replace("save with check='warn'", f"{command} with --check warn")
    return _FORMAT_ARGUMENT.sub(r"--format \1", text)


def handle_errors(command: F) -> F:
    """Library errors: one line on stderr, exit 1. Never a traceback.

    The text is made valid UTF-8 (a lone surrogate quoted from the input is shown as
    ``\\ud800``) and read defensively, so printing an error never raises a second one.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except StateError as exc:
            text = _describe(exc)
            if isinstance(exc, ScenarioExistsError):  # its hint names the library's parameters
                for library, flag in _FLAGS:
                    text = text.replace(library, flag)
            text = terminal_words(text, command.__name__)
            err.print(f"error: {text}", markup=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted; nothing further was changed", markup=False)
            raise typer.Exit(130) from None
        except BrokenPipeError:  # the output's reader has gone (`| head`): not a bug
            output_cut()
        except Exception as exc:  # a bug: still one line, with what to report
            err.print(f"error: unexpected {type(exc).__name__}: {_describe(exc)} (please report this)", markup=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def store_of(ctx: typer.Context) -> "ScenarioStore":
    """The store the command works on: ``--db``, else ``HEALTHSIM_DB``, else the default file."""
    from .state import ScenarioStore

    return ScenarioStore(ctx.obj.get("db") if ctx.obj else None)


def progress_bar(label: str, unit_bytes: bool = False, source: Path | None = None) -> Any:
    """:func:`healthsim.progress.progress_bar`, imported when a command draws one; with
    ``source``, its name is in the label and its size the total from the first frame."""
    from .progress import progress_bar as bar
    from .progress import size_of

    if source is None:
        return bar(label, unit_bytes=unit_bytes)
    return bar(f"{label} {source.name}", unit_bytes=unit_bytes, total=size_of(source))


def print_json(value: Any) -> None:
    write_out(json.dumps(value, ensure_ascii=False, indent=2) + "\n")  # in pieces: see cli_pipes


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{t} {n:,}" for t, n in counts.items()) or "no entities"


_SIGNS = {"added": "+", "removed": "-", "updated": "~"}


def changes_text(changes: dict[str, Any]) -> str:
    """A version's changes in one short line, totals first so that a narrow terminal cuts
    only the detail: ``+30: patients 5, encounters 5, …; -2 claims; ~1 patients``."""
    parts = []
    for kind, counts in changes.items():
        if not counts:
            continue
        if isinstance(counts, dict) and all(isinstance(n, int) for n in counts.values()):
            total = sum(counts.values())
            sign = _SIGNS.get(kind, f"{kind} ")
            detail = next(iter(counts)) if len(counts) == 1 else counts_text(counts)
            parts.append(f"{sign}{total:,} {detail}" if len(counts) == 1 else f"{sign}{total:,}: {detail}")
        else:  # scenario fields (name, description, tags…): their names
            names = list(counts) if isinstance(counts, (dict, list)) else [str(counts)]
            parts.append(f"{kind}: {', '.join(map(str, names))}")
    return "; ".join(parts)


TYPES_ROOM = 20  # cells the types column of `healthsim list` needs to say something


def fits_types(headers: list[str], rows: list[list[str]], width: int) -> bool:
    """Whether `healthsim list` has room for its last column, the types, beside whole names
    and a short tag list (rows as ``fitted_table`` takes them, types last)."""

    def widest(i: int) -> int:
        return max([len(headers[i]), *(len(row[i]) for row in rows)])

    used = widest(0) + widest(1) + min(widest(2), 12) + widest(3) + 3 * (len(headers) - 1)
    return width - used >= min(TYPES_ROOM, widest(4))


NAME_ROOM = 20  # cells a scenario's name keeps in `healthsim list` before tags and times give way


def room_for_names(headers: list[str], rows: list[list[str]], width: int) -> tuple[list[str], list[list[str]]]:
    """`healthsim list` on a narrow terminal: the tags, then the time, are left out while
    names would be cut below ``NAME_ROOM`` cells (at 40 columns every name was cut to five
    characters, and two scenarios of the same prefix looked the same)."""
    from rich.cells import cell_len

    def name_room(headers: list[str], rows: list[list[str]]) -> int:
        natural = [max([cell_len(h), *(cell_len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
        shared = [i for i, h in enumerate(headers) if h in ("name", "tags", "types")]
        fixed = sum(n for i, n in enumerate(natural) if i not in shared)
        room = width - fixed - 3 * (len(headers) - 1)
        return room * 3 // (3 + len(shared) - 1)  # the name's weight is 3, the others' 1

    widest = max([cell_len(row[0]) for row in rows], default=0)
    for optional in ("tags", "updated (UTC)", "deleted (UTC)"):
        if name_room(headers, rows) >= min(widest, NAME_ROOM) or optional not in headers:
            continue
        i = headers.index(optional)
        headers, rows = headers[:i] + headers[i + 1 :], [row[:i] + row[i + 1 :] for row in rows]
    return headers, rows


DIFF_TABLE_WIDTH = 60  # below it, `healthsim diff` prints a line per type instead of its table
HISTORY_TABLE_WIDTH = 70  # below it, `healthsim history` prints two lines per version instead of its table


def cut_line(text: str, width: int) -> Text:
    """``text`` as literal text in at most ``width`` cells, ending in ``…`` when cut."""
    line = Text(safe_text(text), no_wrap=True, overflow="ellipsis")
    line.truncate(width, overflow="ellipsis")
    return line


def table_width() -> int:
    """Columns a table may use: ``COLUMNS`` if set, else the terminal's width; piped output
    gets 160, so that names come out whole for grep and scripts (``--json`` is exact)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return 160


def report_saved(
    store: "ScenarioStore", scenario_id: str, verb: str, as_json: bool, since: "_dt.datetime | None" = None
) -> None:
    """Print what save/import made: the specification's save result. ``since``: when an
    overwrite began; a scenario not changed since then was written with exactly what it
    held (no version was made), and the text says so."""
    if as_json:
        print_json(store.scenario_summary(scenario_id))
        return
    with store.open_scenario(scenario_id) as reader:  # (one read: the summary has the counts and the time)
        about = reader.summary()
    unchanged = ""
    if since is not None and _dt.datetime.fromisoformat(str(about["updated_at"]).replace("Z", "+00:00")) < since:
        unchanged = f"unchanged (the same as version {about['version']}): "
    out.print(
        f"{verb} {about['name']!r} ({scenario_id}): {unchanged}{counts_text(about['entities_by_type'])}",
        markup=False,
    )


# --------------------------------------------------------------------------- app


def version_callback(value: bool) -> None:
    if value:
        out.print(f"healthsim {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    db: Annotated[
        str | None,  # not Path, which collapses "postgresql://…" to "postgresql:/…" in messages
        typer.Option(
            "--db",
            help="Database file, or a postgresql:// URL (a team store). "
            "Default: HEALTHSIM_DB, else ~/.healthsim/healthsim.duckdb.",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = {"db": db}
    out.width = table_width()  # COLUMNS, else the terminal's, else 160 when piped


@app.command()
@handle_errors
def save(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name (unique).")],
    from_file: Annotated[
        Path, typer.Option("--from", help='JSON file: {"patients": [...], ...} or any importable shape.')
    ],
    description: Annotated[str | None, typer.Option(help="Description (replaces the file's).")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", metavar="<tag>", help="A tag; repeat for more (replaces the file's).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a scenario of the same name.")] = False,
    check_mode: Annotated[
        str | None,
        typer.Option(
            "--check",
            help="warn: check the entities and show the problems; refuse: also save nothing on errors.",
            callback=one_of("check"),
            metavar="<warn|refuse>",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Save entities from a JSON file as a named scenario.

    \b
    Example: healthsim save diabetes-cohort --from cohort.json --tag diabetes --check warn
    """
    store = store_of(ctx)
    with progress_bar("saving", unit_bytes=True, source=from_file) as progress:
        saved = store.import_scenario_from_json(
            from_file,
            name,
            overwrite,
            provenance={"operation": "save"},
            progress=progress,
            description=description,
            tags=tag,
            check=check_mode,
        )
    scenario_id = saved if check_mode is None else saved["scenario_id"]
    written = store.scenario_summary(scenario_id)
    if as_json:
        print_json(written if check_mode is None else {**written, "check": saved["check"]})
    else:
        out.print(
            f"saved {written['name']!r} ({scenario_id}): {counts_text(written['entities_by_type'])}", markup=False
        )
        if check_mode is not None:
            from .summary_view import check_table

            out.print(check_table(dict(saved["check"]), width=min(out.width or 80, 80)), markup=False)
    undo = "healthsim restore" if overwrite else "healthsim delete"
    note_type_slips(written["name"], list(written["entities_by_type"]), [], undo)


@app.command()
@handle_errors
def load(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID.")],
    entity_type: Annotated[str | None, typer.Option("--type", help="Page through one entity type.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Entities per page (with --type).")] = 20,
    offset: Annotated[int, typer.Option(min=0, help="First entity of the page (with --type).")] = 0,
    version: Annotated[int | None, typer.Option(min=1, help="An earlier version (see healthsim history).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a scenario: counts by type, tags, dates and a few sample entities.

    --json prints the whole scenario (as load_scenario returns it); --type T pages through
    one entity type, one JSON object per line; --version N shows an earlier version.

    \b
    Example: healthsim load diabetes-cohort --type patients --limit 5
    """
    store = store_of(ctx)
    if entity_type is not None:
        with store.open_scenario(name, version) as reader:
            page = reader.entities(entity_type, offset, offset + limit)
        if as_json:
            print_json(page)
        else:
            for entity in page:
                write_out(json.dumps(entity, ensure_ascii=False) + "\n")
        return
    if as_json:
        print_json(store.load_scenario(name, version))
        return
    with store.open_scenario(name, version) as reader:
        overview = reader.overview(samples=1)
    show_summary(overview)


LOAD_NARROW = 60  # below it, `healthsim load` shows its header as a list and a sample a line


def show_summary(summary: dict[str, Any]) -> None:
    """The header, then a table of counts with one sample per type (no statistics: that
    is ``healthsim summary``)."""
    from .summary_view import fitted_table, label_lines, shown_text

    width = table_width()
    items = [
        ("name", str(summary["name"])),
        ("version", str(summary["version"])),
        ("scenario_id", str(summary["scenario_id"])),
        ("description", summary["description"] or ""),
        ("tags", ", ".join(summary["tags"])),
        ("created", str(summary["created_at"])),
        ("updated", str(summary["updated_at"])),
        ("entities", f"{summary['entity_count']:,}"),
    ]
    types = summary["entities_by_type"]
    samples = {t: json.dumps(s[0], ensure_ascii=False) if s else "" for t, s in summary["samples"].items()}
    if width < LOAD_NARROW:
        # At 40 the id folded mid-word ("…-2bc" / "a6af71e39") and each sample took four
        # lines of a boxed table: a value under its label, one line per type.
        out.print(label_lines(items, width))
        rows = [[t, f"{n:,}", samples.get(t, "")] for t, n in types.items()]
        out.print(fitted_table(["entity type", "count", "sample"], rows, width, flexible={0: 3, 2: 1}, right=[1]))
        return
    info = Table.grid(padding=(0, 2))
    info.add_column(no_wrap=True)
    info.add_column(overflow="fold")  # a long value folds, whole
    for label, value in items:
        info.add_row(label, shown_text(value))  # (the scenario's text: no escape sequence reaches the terminal)
    out.print(info)
    counts = Table("entity type", "count", "sample")
    # At most three lines of the sample's cell: the terminal less the other columns and
    # the borders and padding (10 cells).
    widest = max([len("entity type"), *map(len, types)]), max([len("count"), *(len(f"{n:,}") for n in types.values())])
    room = min(100, 3 * max(width - sum(widest) - 10, 10))
    for entity_type_name, count in types.items():
        text = samples.get(entity_type_name, "")
        counts.add_row(entity_type_name, f"{count:,}", text[:room] + ("…" if len(text) > room else ""))
    out.print(counts)


TABLE_BYTES = 512 * 1024  # the summary drawn in a terminal: room for every field computed


@app.command()
@handle_errors
def summary(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID.")],
    version: Annotated[int | None, typer.Option(min=1, help="An earlier version (see healthsim history).")] = None,
    samples: Annotated[int, typer.Option(min=1, help="Sample entities per type (with --json).")] = 2,
    as_json: JsonOption = False,
) -> None:
    """Summarize a scenario: per type, how present each field is and what its values are
    (top values, ranges, dates), ages by gender, top codes, entities over time.

    Computed in the database. The tables show every field computed (up to 80 per type);
    the --json dict is the one assistants get, at most 12 KB.

    \b
    Example: healthsim summary diabetes-cohort
    """
    store = store_of(ctx)
    if as_json:  # the dict an assistant gets: at most 12 KB
        print_json(store.summarize_scenario(name, version=version, samples=samples))
    else:  # a terminal shows every field computed
        from .summary_view import render_summary

        render_summary(dict(store.summarize_scenario(name, version=version, samples=1, max_bytes=TABLE_BYTES)), out)


@app.command()
@handle_errors
def check(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID.")],
    version: Annotated[int | None, typer.Option(min=1, help="An earlier version (see healthsim history).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a scenario: duplicate ids, broken references, values that are not what their
    field is, impossible timelines, malformed codes, identifiers that look real.

    Computed in the database. Exits 1 when any problem is an error (warnings: 0).

    \b
    Example: healthsim check diabetes-cohort
    """
    from .summary_view import check_table

    answer = store_of(ctx).check_scenario(name, version=version)
    if as_json:
        print_json(answer)
    else:
        out.print(check_table(dict(answer), width=min(out.width or 80, 80)), markup=False)
    if not answer["ok"]:
        raise typer.Exit(1)


@app.command()
@handle_errors
def report(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID.")],
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            help="File or folder (ending in /) to write; - for standard output. Default: ~/Downloads/{name}-report.html.",
        ),
    ] = None,
    version: Annotated[int | None, typer.Option(min=1, help="An earlier version (see healthsim history).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a scenario's summary with charts as one HTML page that opens offline.

    \b
    Example: healthsim report diabetes-cohort -o /tmp/cohort.html
    """
    store = store_of(ctx)
    if output == "-":  # the page to standard output (it made a file named "-")
        to_standard_output(lambda path: store.report_scenario(name, path, version=version), "report.html", as_json)
        return
    path = store.report_scenario(name, output, version=version)
    if as_json:
        print_json({"path": str(path)})
    else:
        out.print(str(path), markup=False)


def empty_listing(tag: str | None, search: str | None, deleted: bool) -> str:
    """What ``healthsim list`` says when it lists nothing: why, and what to do next."""
    matches = []
    if tag is not None:
        matches.append(f"the tag {tag!r}")
    if search is not None:
        matches.append(f"{search!r} in its name or description")
    if matches:
        where = "in the trash " if deleted else ""
        return f"No scenario {where}has {' and '.join(matches)}. Without filters: healthsim list{' --deleted' if deleted else ''}"
    if deleted:
        return "The trash is empty: no deleted scenario to restore."
    return (
        "No scenarios yet. Save one: healthsim save NAME --from FILE.json; "
        "bring forward older HealthSim files: healthsim migrate"
    )


@app.command("list")
@handle_errors
def list_command(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option(help="Only scenarios with this tag (any case).")] = None,
    search: Annotated[str | None, typer.Option(help="Only names or descriptions containing this text.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many scenarios.")] = 100,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many first (the next page).")] = 0,
    deleted: Annotated[
        bool, typer.Option("--deleted", help="List the trash: deleted scenarios that can be restored.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List scenarios, newest first (--deleted: the trash).

    \b
    Example: healthsim list --tag diabetes --search cohort
    """
    result = store_of(ctx).list_scenarios(tag=tag, search=search, limit=limit, deleted=deleted, offset=offset)
    if as_json:
        print_json(result)
        return
    if not result["scenarios"]:
        # An empty table tells a new user nothing: say why it is empty and what to do next.
        total = result["total_count"]
        past = f"No scenario past --offset {offset}: {total:,} match{'es' if total != 1 else ''}."
        out.print(past if total else empty_listing(tag, search, deleted), markup=False)
        return
    from rich.cells import cell_len

    from .summary_view import fitted_table, fitted_widths, minute

    rows = [
        [
            s["name"],
            f"{s['entity_count']:,}",
            ", ".join(s["tags"]),
            minute(s["updated_at"] or ""),
            ", ".join(s["entities_by_type"]),
        ]
        for s in result["scenarios"]
    ]
    headers = ["name", "entities", "tags", "deleted (UTC)" if deleted else "updated (UTC)", "types"]
    # One line per scenario: counts and times whole; the name first, then tags, share the
    # rest. The types (which `healthsim load` shows) come only where they have room.
    width, full = table_width(), rows
    if not fits_types(headers, rows, width):
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    headers, rows = room_for_names(headers, rows, width)
    weights = {"name": 3, "tags": 1, "types": 1}
    flexible = {i: weights[h] for i, h in enumerate(headers) if h in weights}
    if width < LOAD_NARROW and fitted_widths(headers, rows, width, flexible)[0] < max(cell_len(r[0]) for r in rows):
        # A cut name cannot be typed back (`healthsim restore cohort-copy-with-a-rather-lo…`):
        # on a narrow terminal each scenario gets its name on a line, the rest under it.
        out.print(scenario_lines(full, deleted, width))
    else:
        out.print(fitted_table(headers, rows, width, flexible=flexible, right=[1]))
    out.print(listing_footer(len(result["scenarios"]), result["total_count"], offset), markup=False)


def scenario_lines(rows: list[list[str]], deleted: bool, width: int) -> Text:
    """`healthsim list` rows (name, entities, tags, time, types) as a name line each,
    its details wrapped under it."""
    from .summary_view import wrapped

    lines: list[str] = []
    for name, entities, tags, at, types in rows:
        lines += wrapped(name, width)
        details = [f"{entities} entities", f"{'deleted' if deleted else 'updated'} {at}"]
        details += [f"tags {tags}"] if tags else []
        details += [f"types {types}"] if types else []
        lines += wrapped(" · ".join(details), width, indent=4)
    return Text("\n".join(lines))


def listing_footer(shown: int, total: int, offset: int) -> str:
    """The line under ``healthsim list``'s table: how many of how many, and the next page."""
    first = f"{offset + 1:,}-{offset + shown:,}" if offset else f"{shown:,}"
    rest = total - offset - shown
    more = f" ({rest:,} more: --offset {offset + shown})" if rest > 0 else ""
    return f"{first} of {total:,} scenario(s){more}"


@app.command()
@handle_errors
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    purge: Annotated[
        bool, typer.Option("--purge", help="Remove it and its history for good (also from the trash).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete a scenario (asks first unless --yes). It goes to the trash: healthsim restore
    brings it back for 30 days; --purge removes it for good.

    \b
    Example: healthsim delete old-cohort --yes
    """
    store = store_of(ctx)
    try:
        summary: dict[str, Any] = dict(store.scenario_summary(name))  # not found: error before asking
    except ScenarioNotFoundError:
        trash = [
            s
            for s in store.list_scenarios(limit=10_000, deleted=True)["scenarios"]
            if name.strip() in (s["name"], s["scenario_id"])
        ]
        if not purge or not trash:
            raise
        summary = dict(trash[0])
    else:
        if purge and name.strip().lower() != summary["scenario_id"]:  # by name: the trash's too?
            namesakes = [
                s for s in store.list_scenarios(limit=10_000, deleted=True)["scenarios"] if s["name"] == summary["name"]
            ]
            if namesakes:  # which one? The library refuses such a purge, naming both ids: before asking
                store.delete_scenario(name, purge=True)
    if not yes:
        verb = "Purge" if purge else "Delete"
        question = f"{verb} scenario {summary['name']!r} ({summary['entity_count']:,} entities)?"
        if not sys.stdin.isatty() or not typer.confirm(question, default=False, err=True):
            err.print("not deleted (confirm, or pass --yes)", markup=False)
            raise typer.Exit(1)
    deleted = store.delete_scenario(summary["scenario_id"], purge=purge)
    if as_json:
        print_json(
            {"deleted": deleted, "purged": purge, "name": summary["name"], "scenario_id": summary["scenario_id"]}
        )
    elif purge:
        out.print(f"purged {summary['name']!r}", markup=False)
    else:
        out.print(f"deleted {summary['name']!r} (healthsim restore {summary['name']!r} brings it back)", markup=False)


@app.command()
@handle_errors
def export(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID.")],
    output: Annotated[
        str | None,  # not Path: a trailing "/" (a folder to create) must survive
        typer.Option(
            "-o",
            "--output",
            help="File (json, ndjson; - for standard output) or folder (parquet, csv, fhir, fhir-bundle) to write. Default: "
            "~/Downloads/{name}.json, {name}.ndjson or {name}-{format}/.",
        ),
    ] = None,
    export_format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="json (the exchange format), ndjson, parquet, csv, fhir (a FHIR R4 Bulk Data folder) or "
            "fhir-bundle (one transaction Bundle per patient).",
            callback=one_of("export"),
            metavar="<format>",
        ),
    ] = "json",
    entity_types: Annotated[
        list[str] | None, typer.Option("--type", metavar="<type>", help="Only this entity type (repeat for more).")
    ] = None,
    version: Annotated[int | None, typer.Option(min=1, help="An earlier version (default: the current one).")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="fhir: refuse if an entity cannot become a valid resource.")
    ] = False,
    validate: Annotated[
        bool, typer.Option("--validate", help="fhir: check every resource (needs healthsim-state[fhir]).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Export a scenario: a JSON file to share (the exchange format), one JSON line per
    entity (ndjson), a folder of Parquet or CSV files, one per entity type, or FHIR R4.

    \b
    Example: healthsim export diabetes-cohort --format parquet -o /tmp/cohort-parquet
    """
    store = store_of(ctx)
    if output == "-":  # standard output, as `-` means to Unix tools (it made a file named "-")
        fmt = export_format.lower()
        if fmt not in ("json", "ndjson"):
            err.print(
                f"error: -o - (standard output) takes a one-file format, json or ndjson; {fmt} writes a folder: "
                "give -o a folder path",
                markup=False,
            )
            raise typer.Exit(2)

        def write(path: Path) -> None:
            with progress_bar(f"exporting {name}", unit_bytes=False) as progress:
                store.export_scenario(name, path, format=fmt, version=version, types=entity_types, progress=progress)

        to_standard_output(write, f"export.{fmt}", as_json)
        return
    fhir = {"strict": strict, "validate": validate} if strict or validate else {}
    with progress_bar(f"exporting {name}", unit_bytes=False) as progress:
        path = store.export_scenario(
            name, output, format=export_format, version=version, types=entity_types, progress=progress, **fhir
        )
    skipped: dict[str, Any] = {}
    if export_format.lower() in ("fhir", "fhir-bundle"):
        from .state.exchange.fhir.report import skipped_of

        skipped = skipped_of(Path(path))
    if as_json:
        print_json({"path": str(path), "format": export_format.lower(), **skipped})
    else:
        out.print(str(path), markup=False)
    if skipped.get("skipped_count"):
        note_skipped(skipped, Path(path))


def to_standard_output(write: Callable[[Path], Any], file_name: str, as_json: bool) -> None:
    """``-o -``: what ``write`` writes to the file it is given (a temporary one, so every
    export stays the library's one streamed code path) is copied to standard output, in
    pieces, so a closed pipe ends the program as everywhere (cli_pipes)."""
    import tempfile

    if as_json:
        err.print("error: --json prints where the output went; with -o - the output itself is printed", markup=False)
        raise typer.Exit(2)
    with tempfile.TemporaryDirectory(prefix="healthsim-out-") as folder:
        path = Path(folder) / file_name
        write(path)
        with open(path, "rb") as source:
            copy_out(source)


def note_skipped(skipped: dict[str, Any], folder: Path) -> None:
    """A warning on stderr when a FHIR export left entities out (they are listed in the
    folder's report): the terminal must not look like a whole export."""
    from .state.exchange.fhir.report import REPORT

    reasons = "; ".join(f"{s['reason']} ({s['count']:,})" for s in skipped["skipped"])
    more = sum(s["count"] for s in skipped["skipped"]) < skipped["skipped_count"]
    err.print(
        f"warning: {skipped['skipped_count']:,} entities could not become valid FHIR resources and were "
        f"not exported: {reasons}{'; …' if more else ''}. Each is named in {folder / REPORT}; "
        "--strict refuses such an export instead.",
        markup=False,
    )


@app.command("import")
@handle_errors
def import_command(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help="Scenario JSON file (1.0 format or a legacy HealthSim file); with --format fhir a Bundle, "
            "a folder of Bundles or Bulk NDJSON; with --format synthea-csv a Synthea CSV folder."
        ),
    ],
    name: Annotated[str | None, typer.Option(help="Scenario name (default: the file's, else its stem).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a scenario of the same name.")] = False,
    import_format: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="json (default), fhir or synthea-csv.",
            callback=one_of("import"),
            metavar="<json|fhir|synthea-csv>",
        ),
    ] = "json",
    as_json: JsonOption = False,
) -> None:
    """Import a scenario file shared by a colleague or left by an older HealthSim, or
    FHIR R4 / Synthea output.

    \b
    Example: healthsim import ~/Downloads/diabetes-cohort.json --name from-alice
    Example: healthsim import synthea/output/csv --format synthea-csv --name synthea-run
    """
    store = store_of(ctx)
    began = _dt.datetime.now(_dt.UTC) if overwrite else None
    with progress_bar("importing", unit_bytes=True, source=file) as progress:
        if import_format.lower() == "json":
            scenario_id = store.import_scenario_from_json(file, name, overwrite, progress=progress)
        else:
            scenario_id = store.import_scenario(file, name, overwrite, format=import_format, progress=progress)
    report_saved(store, scenario_id, "imported", as_json, began)


def report_edit(result: dict[str, Any], as_json: bool) -> None:
    """Print what an add or remove did: counts per type."""
    if as_json:
        print_json(result)
        return
    parts = [
        f"{verb} {counts_text(result[key])}"
        for key, verb in (("added", "added"), ("updated", "updated"), ("removed", "removed"))
        if result.get(key)
    ]
    out.print(
        f"{result['name']!r}: {'; '.join(parts) or 'nothing changed'}; now {counts_text(result['entities_by_type'])}",
        markup=False,
    )
    if result.get("not_found"):
        err.print(f"not found: {', '.join(result['not_found'])}", markup=False)


def report_entry(entry: dict[str, Any], verb: str, as_json: bool) -> None:
    if as_json:
        print_json(entry)
    else:
        out.print(f"{verb} {entry['name']!r}: tags {', '.join(entry['tags']) or 'none'}", markup=False)


def note_type_slips(name: str, new_types: list[str], known: list[str], undo: str) -> None:
    """A note on stderr for each type just written that looks like a slip for a HealthSim
    type or for one the scenario holds (``patiens``): types are free, so it was stored."""
    from .cli_typos import likely_meant

    for slip, meant in likely_meant(new_types, known).items():
        err.print(
            f"note: {slip!r} is not an entity type HealthSim knows; did you mean {meant!r}? "
            f"It was stored as a type of its own ({undo} {shlex.quote(safe_text(name))} undoes it).",
            markup=False,
        )


@app.command()
@handle_errors
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID.")],
    from_file: Annotated[
        Path, typer.Option("--from", help='JSON file: {"patients": [...], ...} or any importable shape.')
    ],
    upsert: Annotated[
        bool,
        typer.Option(
            "--upsert/--no-upsert", help="Replace entities whose id is there already (default) or append all."
        ),
    ] = True,
    create: Annotated[bool, typer.Option("--create", help="Make the scenario if it does not exist.")] = False,
    check_mode: Annotated[
        str | None,
        typer.Option(
            "--check",
            help="warn: check the entities added and show the problems; refuse: also add nothing on errors.",
            callback=one_of("check"),
            metavar="<warn|refuse>",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Add the entities of a JSON file to a scenario (one transaction).

    An entity whose type and id are there already replaces it in place; --no-upsert appends.

    \b
    Example: healthsim add diabetes-cohort --from examples/batch-2.json --check warn
    """
    store = store_of(ctx)
    result: dict[str, Any] = dict(
        store.add_entities_from_json(name, from_file, upsert=upsert, create=create, check=check_mode)
    )
    counts = result["entities_by_type"]
    new_types = [t for t, n in result["added"].items() if counts.get(t) == n]  # types this add made
    report_edit(result, as_json)
    if "check" in result and not as_json:
        from .summary_view import check_table

        out.print(check_table(dict(result["check"]), width=min(out.width or 80, 80)), markup=False)
    note_type_slips(result["name"], new_types, [t for t in counts if t not in new_types], "healthsim restore")


@app.command()
@handle_errors
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID.")],
    ids: Annotated[list[str], typer.Argument(help="Entity ids: their own id (MRN-10001) or stored UUID.")],
    entity_type: Annotated[str, typer.Option("--type", help="Entity type, e.g. patients.")],
    as_json: JsonOption = False,
) -> None:
    """Remove entities of one type by id (one transaction).

    \b
    Example: healthsim remove diabetes-cohort --type patients MRN-10001 MRN-10002
    """
    result = dict(store_of(ctx).remove_entities(name, entity_type, ids))
    report_edit(result, as_json)
    if result["not_found"] and not result["removed"]:
        raise typer.Exit(1)


@app.command()
@handle_errors
def rename(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="Scenario name or UUID.")],
    new: Annotated[str, typer.Argument(help="New name (must be free).")],
    as_json: JsonOption = False,
) -> None:
    """Rename a scenario.

    \b
    Example: healthsim rename diabetes-cohort diabetes-cohort-v1
    """
    report_entry(dict(store_of(ctx).update_scenario(old, new_name=new)), "renamed to", as_json)


@app.command()
@handle_errors
def tag(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID.")],
    add_tags: Annotated[
        list[str] | None, typer.Option("--add", metavar="<tag>", help="A tag to add; repeat for more.")
    ] = None,
    remove_tags: Annotated[
        list[str] | None, typer.Option("--remove", metavar="<tag>", help="A tag to remove (any case); repeat for more.")
    ] = None,
    description: Annotated[str | None, typer.Option(help='New description ("" clears it).')] = None,
    as_json: JsonOption = False,
) -> None:
    """Add or remove tags (and change the description) of a scenario.

    \b
    Example: healthsim tag diabetes-cohort --add reviewed --remove draft
    """
    entry = store_of(ctx).update_scenario(
        name, add_tags=add_tags or (), remove_tags=remove_tags or (), description=description
    )
    report_entry(dict(entry), "tagged", as_json)


@app.command()
@handle_errors
def copy(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Scenario name or UUID.")],
    new_name: Annotated[str, typer.Argument(help="Name of the copy (must be free).")],
    as_json: JsonOption = False,
) -> None:
    """Copy a scenario under a new name (same entities, same order).

    \b
    Example: healthsim copy diabetes-cohort diabetes-cohort-experiment
    """
    store = store_of(ctx)
    report_saved(store, store.copy_scenario(source, new_name), "copied to", as_json)


def report_transfer(result: dict[str, Any], verb: str, where: str, as_json: bool) -> None:
    if as_json:
        print_json(result)
    else:
        counts = counts_text(result["entities_by_type"])
        out.print(f"{verb} {result['name']!r} ({result['scenario_id']}) {where}: {counts}", markup=False)


NewNameOption = Annotated[str | None, typer.Option("--as", help="Its name in the other store (default: the same).")]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace a scenario of that name there (it gains a version).")
]
# A pull names and replaces the scenario in this database, not in the other store.
PulledNameOption = Annotated[str | None, typer.Option("--as", help="Its name in this database (default: the same).")]
PulledOverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace a scenario of that name here (it gains a version).")
]


@app.command()
@handle_errors
def push(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID, in this database.")],
    to: Annotated[str, typer.Option("--to", help="The other store: a postgresql:// URL or a DuckDB file.")],
    new_name: NewNameOption = None,
    overwrite: OverwriteOption = False,
    as_json: JsonOption = False,
) -> None:
    """Copy a scenario from this database to another store, such as the team's server.

    Its id, creation time, tags, metadata and entities are kept exactly.

    \b
    Example: healthsim push diabetes-cohort --to postgresql://me@db.example.org/healthsim
    """
    from .state import transfer_scenario

    store = store_of(ctx)
    result = transfer_scenario(name, store, to, new_name=new_name, overwrite=overwrite)
    report_transfer(dict(result), "pushed", f"to {type(store)(to).path}", as_json)


@app.command()
@handle_errors
def pull(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID, in the other store.")],
    source: Annotated[str, typer.Option("--from", help="The other store: a postgresql:// URL or a DuckDB file.")],
    new_name: PulledNameOption = None,
    overwrite: PulledOverwriteOption = False,
    as_json: JsonOption = False,
) -> None:
    """Copy a scenario from another store, such as the team's server, into this database.

    Its id, creation time, tags, metadata and entities are kept exactly.

    \b
    Example: healthsim pull diabetes-cohort --from postgresql://me@db.example.org/healthsim
    """
    from .state import transfer_scenario

    store = store_of(ctx)
    result = transfer_scenario(name, source, store, new_name=new_name, overwrite=overwrite)
    report_transfer(dict(result), "pulled", f"from {type(store)(source).path}", as_json)


@app.command()
@handle_errors
def merge(
    ctx: typer.Context,
    sources: Annotated[list[str], typer.Argument(help="Scenarios to merge, in order.")],
    into: Annotated[str, typer.Option("--into", help="Name of the new scenario (must be free).")],
    upsert: Annotated[bool, typer.Option("--upsert", help="Later scenarios replace entities of the same id.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Merge scenarios into a new one, in the order given.

    \b
    Example: healthsim merge cohort-a cohort-b --into cohort-ab
    """
    store = store_of(ctx)
    report_saved(store, store.merge_scenarios(sources, into, upsert=upsert), "merged into", as_json)


@app.command()
@handle_errors
def history(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Scenario name or UUID (a deleted one's too).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many versions.")] = 50,
    purge: Annotated[
        bool, typer.Option("--purge", help="Apply retention now (to NAME, or to every scenario).")
    ] = False,
    keep_versions: Annotated[
        int | None, typer.Option(min=1, help="With --purge: versions to keep per scenario.")
    ] = None,
    keep_deleted_days: Annotated[
        float | None, typer.Option(min=0, help="With --purge: days to keep deleted scenarios (inf: forever).")
    ] = None,
    keep_version_days: Annotated[
        float | None, typer.Option(min=0, help="With --purge: days every version is kept (inf: forever).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a scenario's versions, newest first; --purge applies (or tightens) retention.

    \b
    Example: healthsim history diabetes-cohort
    """
    store = store_of(ctx)
    if purge:
        result = store.purge_history(
            name, keep_versions=keep_versions, keep_deleted_days=keep_deleted_days, keep_version_days=keep_version_days
        )
        if as_json:
            print_json(result)
        else:
            out.print(
                f"removed {result['versions_removed']} version(s) and "
                f"{result['deleted_scenarios_removed']} deleted scenario(s)",
                markup=False,
            )
        return
    if name is None:
        err.print("error: name a scenario (or pass --purge)", markup=False)
        raise typer.Exit(2)
    found = store.scenario_history(name, limit)
    if as_json:
        print_json(found)
        return
    from .summary_view import fitted_table, minute

    by = any(v.get("by") for v in found["versions"])  # who made each change, where recorded
    rows = [
        [str(v["version"]), minute(v["at"]), v["operation"], changes_text(v["changes"]), f"{v['entity_count']:,}"]
        + ([str(v.get("by") or "")] if by else [])
        for v in found["versions"]
    ]
    headers = ["version", "at (UTC)", "operation", "changes", "entities"] + (["by"] if by else [])
    flexible = {3: 3, 5: 1} if by else {3: 1}
    width = table_width()
    title = f"{found['name']!r} ({found['scenario_id']})"
    if len(title) > width:  # a long name: the id on a line of its own (labelled where it fits)
        label = "scenario_id " if width >= 48 else ""
        title = f"{found['name']!r}\n{label}{found['scenario_id']}"
    out.print(title, markup=False)
    if width >= HISTORY_TABLE_WIDTH:
        out.print(fitted_table(headers, rows, width, flexible=flexible, right=[0, 4]))
        return
    # A narrow terminal cut every time and header ("2026-12-07 1…", "ver…") and left out
    # the changes: each version on a line, its changes (and author) on the next.
    from .summary_view import wrapped

    for row in rows:
        out.print(cut_line(f"{row[0]:>4}  {row[1]}  {row[2]}" + (f" by {row[5]}" if by and row[5] else ""), width))
        # The changes wrap (they were cut to "+5: lab_results 2, p…" at 40 columns).
        out.print(Text("\n".join(wrapped(f"{row[4]} entities; {row[3]}", width, indent=6, hang=8))))


@app.command()
@handle_errors
def restore(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Scenario name or UUID (a deleted one's too).")],
    version: Annotated[
        int | None,
        typer.Option(min=1, help="The version to bring back (default: undo the last change, or the deletion)."),
    ] = None,
    as_name: Annotated[str | None, typer.Option("--as", help="Restore as a new scenario of this name.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Bring back an earlier version (as a new version) or a deleted scenario.

    \b
    Example: healthsim restore diabetes-cohort --version 3
    """
    result = store_of(ctx).restore_scenario(name, version, new_name=as_name)
    if as_json:
        print_json(result)
        return
    changed = [f"{kind} {counts_text(result[kind])}" for kind in ("added", "removed", "updated") if result[kind]]  # type: ignore[literal-required]
    fields = [field for field in result["changed"] if field != "entities"]
    if fields:
        changed.append(f"{', '.join(fields)} as in version {result['restored_version']}")
    out.print(
        f"restored {result['name']!r} to version {result['restored_version']}: now version {result['version']}, "
        f"{counts_text(result['entities_by_type'])}; {'; '.join(changed) or 'nothing changed'}",
        markup=False,
    )


@app.command()
@handle_errors
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="A scenario, or a version of one: name@3.")],
    b: Annotated[str, typer.Argument(help="The other (e.g. the same name: its current version).")],
    as_json: JsonOption = False,
) -> None:
    """Show what changed between two scenarios or versions.

    \b
    Example: healthsim diff diabetes-cohort@3 diabetes-cohort
    """
    result = store_of(ctx).diff_scenarios(a, b)
    if as_json:
        print_json(result)
        return
    out.print(
        f"{result['a']['name']}@{result['a']['version']} -> {result['b']['name']}@{result['b']['version']}",
        markup=False,
    )
    for field, (old, new) in result["scenario"].items():
        out.print(f"  {field}: {old!r} -> {new!r}", markup=False)
    width = table_width()
    table = Table("entity type", "added", "removed", "changed", "unchanged", "examples")
    for entity_type, d in result["types"].items():
        examples = [f"+{i}" for i in d["examples"]["added"][:3]] + [f"-{i}" for i in d["examples"]["removed"][:3]]
        examples += [f"~{c['id']} ({', '.join(c['fields'][:3])})" for c in d["examples"]["changed"][:3]]
        counts = [f"{d[k]:,}" for k in ("added", "removed", "changed", "unchanged")]
        if width < DIFF_TABLE_WIDTH:  # the six columns would be cut to two letters each
            out.print(cut_line(f"{entity_type}: +{counts[0]} -{counts[1]} ~{counts[2]} ={counts[3]}", width))
            for example in examples:
                out.print(cut_line(f"  {example}", width))
            continue
        table.add_row(entity_type, *counts, " ".join(examples))
    if width >= DIFF_TABLE_WIDTH:
        out.print(table)


@app.command()
@handle_errors
def migrate(
    ctx: typer.Context,
    status: Annotated[bool, typer.Option("--status", help="Count legacy files and migrated ones.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would happen; change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before migrating.")] = False,
    source: Annotated[
        list[Path] | None,
        typer.Option("--source", metavar="<folder>", help="Folder of legacy JSON files (repeatable)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Bring forward the JSON files of older HealthSim tools (~/.healthsim/scenarios, workspaces).

    \b
    Example: healthsim migrate --dry-run
    """
    from .migrate_cli import run

    if status and dry_run:
        err.print("error: --status and --dry-run cannot be combined", markup=False)
        raise typer.Exit(2)
    code = run(store_of(ctx), sources=source, status=status, dry_run=dry_run, yes=yes, as_json=as_json)
    raise typer.Exit(code)


@app.command()
@handle_errors
def query(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(help="One read-only SELECT statement.")],
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many rows.")] = 1000,
    timeout: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds before the query is stopped (default 30; 600 with --output)."),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            help="Write every row to this file (.csv, .parquet, .ndjson; - for standard output, with --format).",
        ),
    ] = None,
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="csv, parquet or ndjson (default: from --output's extension).",
            callback=one_of("query"),
            metavar="<csv|parquet|ndjson>",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run one read-only SELECT over saved scenarios (sandboxed: no files, no network).

    Views: entities(scenario, scenario_id, entity_type, entity_id, data) and one per entity
    type, e.g. patients(scenario, scenario_id, entity_id, data). data is JSON: data->>'gender'.

    With --output every row of the result is written to the file (streamed; the query
    itself still cannot write anything).

    \b
    Example: healthsim query "SELECT scenario, count(*) AS n FROM patients GROUP BY scenario"
    """
    store = store_of(ctx)
    if output == "-":  # every row to standard output, in the format --format names
        if output_format is None:
            err.print("error: -o - (standard output) needs --format csv, parquet or ndjson", markup=False)
            raise typer.Exit(2)
        to_standard_output(
            lambda path: store.query_to_file(sql, path, format=output_format, timeout=timeout),
            f"rows.{output_format.lower()}",
            as_json,
        )
        return
    if output is not None:
        written = store.query_to_file(sql, output, format=output_format, timeout=timeout)
        if as_json:
            print_json(written)
        else:
            out.print(f"{written['rows_written']:,} row(s) written to {written['path']}", markup=False)
        return
    if output_format is not None:
        err.print("error: --format goes with --output (the file to write the rows to)", markup=False)
        raise typer.Exit(2)
    result = store.query(sql, limit=limit, timeout=timeout)
    if as_json:
        print_json(result)
        return
    show_rows(result)
    more = " (raise --limit to see more)" if result["truncated"] else ""
    out.print(f"{result['row_count']:,} of {result['total_rows']:,} row(s){more}", markup=False)


def show_rows(result: "QueryResult") -> None:
    """A query's rows as a table, or as records where a table would cut its headers."""
    from .summary_view import fitted_table, reads_as_records, record_lines

    rows = [
        [
            json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list, bool)) else "" if v is None else str(v)
            for v in row
        ]
        for row in result["rows"]
    ]
    # One line per row (a JSON value wrapped at its spaces and cut in every piece read as
    # garbage): every column gives way in turn, long values end in "…", numbers at the right.
    numeric = [
        i
        for i in range(len(result["columns"]))
        if result["rows"]
        and all(isinstance(r[i], (int, float)) and not isinstance(r[i], bool) or r[i] is None for r in result["rows"])
    ]
    flexible = dict.fromkeys(range(len(result["columns"])), 1)
    width = table_width()
    if reads_as_records(result["columns"], rows, width):  # at 40, eight columns were "dd…", "ee…", "a…"
        out.print(record_lines(result["columns"], rows, width))
    else:
        out.print(fitted_table(result["columns"], rows, width, flexible=flexible, right=numeric))


@app.command()
@handle_errors
def info(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the database: path (a team store's URL without its password), engine, size,
    schema version, scenario and entity counts.

    \b
    Example: healthsim --db /data/trial.duckdb info --json
    """
    details = store_of(ctx).database_info()
    if as_json:
        print_json(details)
        return
    items = [
        (key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
        for key, value in details.items()
    ]
    width = table_width()
    if width < LOAD_NARROW:  # a value that does not fit goes under its label; a path breaks after a "/"
        from .summary_view import label_lines

        out.print(label_lines(items, width, label_width=max(len(k) for k, _ in items)))
        return
    grid = Table.grid(padding=(0, 2))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")  # a long path folds onto the next lines, whole (it was cut)
    for key, value in items:
        grid.add_row(key, value)
    out.print(grid)


@app.command()
def mcp(
    ctx: typer.Context,
    http: Annotated[
        bool, typer.Option("--http", help="Serve over HTTP (Streamable HTTP) for a team, with tokens.")
    ] = False,
    host: Annotated[str, typer.Option(help="With --http: the address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="With --http: the port.")] = 8765,
    allow_remote: Annotated[
        bool, typer.Option("--allow-remote", help="With --http: allow a --host other than loopback (TLS in front!).")
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option("--allowed-host", metavar="<host>", help="With --http: a Host header to accept (repeatable)."),
    ] = None,
    allowed_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-origin", metavar="<origin>", help="With --http: an Origin header to accept (repeatable)."
        ),
    ] = None,
    max_body_mb: Annotated[float, typer.Option(min=0.001, help="With --http: the largest request body, in MB.")] = 16,
) -> None:
    """Serve the MCP server over stdio (for Claude Desktop and other MCP clients), or
    with --http over HTTP for a team's assistants (each with a token: healthsim token create).

    \b
    Example client configuration: {"command": "healthsim", "args": ["mcp"]}
    Example: healthsim mcp --http --port 8765
    """
    db = ctx.obj.get("db") if ctx.obj else None
    if http:
        from .mcp.http import HttpOptions, serve_http

        options = HttpOptions(
            host, port, allow_remote, int(max_body_mb * 1_000_000), allowed_host or [], allowed_origin or []
        )
        try:
            options.check()
        except StateError as exc:
            err.print(f"error: {_describe(exc)}", markup=False)
            raise typer.Exit(2) from None
        serve_http(db, options)
        return
    from .mcp_server import serve

    serve(db)


from .token_cli import token_app  # noqa: E402  (Typer only: start-up stays quick)

app.add_typer(token_app, name="token")


def main() -> None:
    """Entry point of the ``healthsim`` program (and of ``python -m healthsim``)."""
    with quiet_when_cut():  # `healthsim … | head`: exit 141, nothing on stderr
        app(prog_name="healthsim")  # (run as a module, the usage would name __main__.py)


if __name__ == "__main__":
    main()
