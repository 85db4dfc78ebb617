"""Reference tables generated from the code, so they cannot fall behind it.

Directives (for reST pages)::

    .. octoproto-config-table:: octoproto.SessionConfig
       :only-own:        (leave out fields inherited from a dataclass base)

    .. octoproto-event-table::
    .. octoproto-error-table::
    .. octoproto-other-names::

    .. octoproto-source:: adapters/_async.py _run

The config table has a row per dataclass field: name, type, default, unit and
the field's ``#:`` doc comment. Every numeric field needs a unit, from
:data:`UNITS` or else named in its doc comment (seconds, ms, bytes,
bytes/s), and every field a doc comment; a missing one is a Sphinx
warning, which fails the ``-W`` build, so a new option cannot land
undocumented. The event and error tables list every event class and every
exception in ``octoproto.__all__`` with their fields and the first sentence
of their docstrings. ``octoproto-other-names`` documents every name of
``octoproto.__all__`` that no reference page documents by name, so a new
public name is in the reference from the day it is added (move it to its
proper section at leisure). ``octoproto-source`` shows one function or
method of the project's code, found by name wherever it is in the file (so
moving it to another class does not break the page), for walk-throughs.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import octoproto

logger = logging.getLogger(__name__)

#: The unit of every numeric option, by ``Class.field`` (or plain ``field`` for all classes).
UNITS: dict[str, str] = {
    "connect_timeout": "s",
    "close_timeout": "s",
    "ping_interval": "s",
    "dead_link_timeout": "s",
    "max_message_size": "bytes",
    "max_http_response_size": "bytes",
    "max_queued_messages": "messages",
    "max_pending_calls": "calls",
    "SocketIOConfig.max_early_events": "events per namespace",
    "SocketIOConfig.max_attachments": "attachments per packet",
    "max_send_backlog": "bytes",
    "warning_ms": "ms",
    "warning_bs": "bytes/s",
    "min_ms": "ms",
    "login_timeout": "s",
    "login_retry_delay": "s",
    "ReconnectSchedule.delays": "s (each)",
    "ReconnectSchedule.attempts": "attempts",
    "ReconnectSchedule.jitter": "fraction of the delay",
    "ReconnectSchedule.jitter_seconds": "s",
    "ThrottleSettings.base": "s",
    "ThrottleSettings.window": "measurements",
    "ThrottleSettings.min_factor": "factor",
    "ThrottleSettings.max_factor": "factor",
}

_NUMERIC = re.compile(r"\b(int|float)\b")
#: Units a doc comment names, tried in order when UNITS has no entry.
_UNIT_WORDS = [
    (re.compile(r"\bbytes/s\b"), "bytes/s"),
    (re.compile(r"\b[Ss]econds\b"), "s"),
    (re.compile(r"\bms\b"), "ms"),
    (re.compile(r"\b[Bb]ytes\b"), "bytes"),
]


def _resolve(path: str) -> Any:
    module_name, _, name = path.rpartition(".")
    module = __import__(module_name, fromlist=[name])
    return getattr(module, name)


def _attribute_docs(cls: type) -> dict[str, str]:
    """The ``#:`` comments of ``cls`` and its dataclass bases, by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        analyzer = ModuleAnalyzer.for_module(klass.__module__)
        for (scope, name), lines in analyzer.find_attr_docs().items():
            if scope == klass.__qualname__:
                docs[name] = " ".join(line.strip() for line in lines if line.strip())
    return docs


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        factory = field.default_factory
        if isinstance(factory, type):
            return f"``{factory.__name__}()``"
        value = factory()
    else:
        return "*required*"
    if isinstance(value, enum.Enum):
        return f"``{type(value).__name__}.{value.name}``"
    if isinstance(value, frozenset):
        # sorted: a set's order changes from run to run (string hashing)
        return "``{" + ", ".join(repr(item) for item in sorted(value)) + "}``"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1 << 16:
        return f"``{value}`` ({_size(value)})"
    return f"``{value!r}``"


def _size(value: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value % size == 0:
            return f"{value // size} {unit}"
    return str(value)


def _cell(text: str) -> list[str]:
    return text.splitlines() or [""]


def _list_table(header: list[str], rows: list[list[str]], widths: str) -> Iterator[str]:
    yield ".. list-table::"
    yield "   :header-rows: 1"
    yield f"   :widths: {widths}"
    yield ""
    for row in [header, *rows]:
        for index, cell in enumerate(row):
            lines = _cell(cell)
            yield f"   {'*' if index == 0 else ' '} - {lines[0]}"
            for line in lines[1:]:
                yield f"       {line}"
    yield ""


def _first_sentence(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    paragraph = doc.split("\n\n")[0].replace("\n", " ").strip()
    match = re.match(r"(.+?\.)(\s|$)", paragraph)
    return match.group(1) if match else paragraph


class _TableDirective(SphinxDirective):
    def _emit(self, lines: Iterator[str]) -> list[nodes.Node]:
        container = nodes.container()
        content = StringList()
        source = self.get_source_info()[0] or "<octoproto-docs>"
        for index, line in enumerate(lines):
            content.append(line, source, index)
        self.state.nested_parse(content, self.content_offset, container)
        return list(container.children)

    def _warn(self, message: str) -> None:
        logger.warning(message, location=self.get_location())


class ConfigTable(_TableDirective):
    """A table of a config dataclass's fields: name, type, default, unit, meaning."""

    required_arguments = 1
    option_spec = {"only-own": directives.flag}  # noqa: RUF012 (docutils' API)

    def run(self) -> list[nodes.Node]:
        cls = _resolve(self.arguments[0])
        fields = dataclasses.fields(cls)
        if "only-own" in self.options:
            inherited = {
                field.name
                for base in cls.__mro__[1:]
                if dataclasses.is_dataclass(base)
                for field in dataclasses.fields(base)
            }
            fields = tuple(field for field in fields if field.name not in inherited)
        docs = _attribute_docs(cls)
        rows = []
        for field in fields:
            kind = str(field.type)
            description = docs.get(field.name, "")
            unit = UNITS.get(f"{cls.__name__}.{field.name}", UNITS.get(field.name))
            if unit is None:
                unit = next((u for word, u in _UNIT_WORDS if word.search(description)), None)
            if unit is None:
                if _NUMERIC.search(kind) and "bool" not in kind:
                    self._warn(
                        f"{cls.__name__}.{field.name} is numeric but has no unit: "
                        "add it to UNITS in docs/_ext/octoproto_docs.py"
                    )
                unit = "—"
            if not description:
                self._warn(
                    f"{cls.__name__}.{field.name} has no '#:' doc comment in "
                    f"{cls.__module__}: the config table needs one"
                )
                description = ""
            rows.append([f"``{field.name}``", f"``{kind}``", _default(field), unit, description])
        header = ["option", "type", "default", "unit", "meaning"]
        return self._emit(_list_table(header, rows, "18 22 18 10 32"))


def _public(kind: type) -> list[type]:
    found = [getattr(octoproto, name) for name in octoproto.__all__]
    classes = [obj for obj in found if isinstance(obj, type) and issubclass(obj, kind)]
    return sorted(classes, key=lambda cls: (cls.__module__, inspect.getsourcelines(cls)[1]))


class EventTable(_TableDirective):
    """Every event class in ``octoproto.__all__``: fields and meaning."""

    def run(self) -> list[nodes.Node]:
        rows = []
        for cls in _public(octoproto.Event):
            if cls is octoproto.Event:
                continue
            fields = ", ".join(
                f"``{field.name}: {field.type}``" for field in dataclasses.fields(cls)
            )
            rows.append([f":class:`~octoproto.{cls.__name__}`", fields, _first_sentence(cls)])
        header = ["event", "fields", "meaning"]
        return self._emit(_list_table(header, rows, "20 40 40"))


class ErrorTable(_TableDirective):
    """Every exception in ``octoproto.__all__``: its bases and when it is raised."""

    def run(self) -> list[nodes.Node]:
        rows = []
        for cls in _public(Exception):
            bases = ", ".join(
                f":class:`~octoproto.{base.__name__}`"
                if base.__module__.startswith("octoproto")
                else f"``{base.__name__}``"
                for base in cls.__bases__
            )
            rows.append([f":class:`~octoproto.{cls.__name__}`", bases, _first_sentence(cls)])
        header = ["error", "subclass of", "raised when"]
        return self._emit(_list_table(header, rows, "25 30 45"))


#: An explicit autodoc (or py:) directive for a name, in the reference pages.
DOCUMENTED = re.compile(r"^\.\. (?:auto\w+|py:\w+):: (?:octoproto\.)?(\w+)\s*$", re.M)


def documented_names(folder: Path) -> set[str]:
    """The names the reference pages in ``folder`` document explicitly."""
    return {
        match.group(1)
        for page in folder.glob("*.rst")
        for match in DOCUMENTED.finditer(page.read_text())
    }


def other_names(folder: Path) -> list[str]:
    """The public names no reference page documents explicitly."""
    documented = documented_names(folder)
    return [name for name in octoproto.__all__ if name not in documented]


class OtherNames(_TableDirective):
    """Autodoc every public name the reference pages do not document by name."""

    def run(self) -> list[nodes.Node]:
        folder = Path(self.env.srcdir) / Path(self.env.docname).parent
        lines = []
        for name in other_names(folder):
            obj = getattr(octoproto, name)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                kind = "autoexception"
            elif isinstance(obj, type):
                kind = "autoclass"
            elif inspect.isfunction(obj):
                kind = "autofunction"
            else:
                kind = "autodata"
            lines += [f".. {kind}:: octoproto.{name}", ""]
        if not lines:
            lines = ["Every public name is documented in its section above.", ""]
        return self._emit(iter(lines))


class Source(SphinxDirective):
    """The source of the first function or method named ``name`` in ``path`` (from the root)."""

    required_arguments = 2

    def run(self) -> list[nodes.Node]:
        relative, name = self.arguments
        path = Path(self.env.srcdir).parent / relative
        self.env.note_dependency(str(path))
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                assert node.end_lineno is not None
                lines = source.splitlines()[first - 1 : node.end_lineno]
                text = textwrap.dedent("\n".join(lines))
                block = nodes.literal_block(text, text, language="python")
                caption = nodes.caption(relative, "", nodes.literal(relative, relative))
                container = nodes.container("", caption, block, literal_block=True)
                return [container]
        logger.warning(f"no function {name!r} in {relative}", location=self.get_location())
        return []


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("octoproto-config-table", ConfigTable)
    app.add_directive("octoproto-event-table", EventTable)
    app.add_directive("octoproto-error-table", ErrorTable)
    app.add_directive("octoproto-other-names", OtherNames)
    app.add_directive("octoproto-source", Source)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
