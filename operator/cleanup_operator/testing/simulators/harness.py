"""A stateful simulator of Harness FirstGen's ``artifactCleanup`` GraphQL mutation.

``POST /gateway/api/graphql?accountId=<account>`` with ``x-api-key``, as in
``vendor-docs/harness-artifact-cleanup.md`` and the Harness section of ``vendor-api-notes.md``:

- Auth: the key must be one of ``api_keys[accountId]``. A bad key (or unknown account) answers
  HTTP 401 ``{"errors": [{"message": "Invalid API key"}]}`` by default; ``auth_error_status = 200``
  gives the other form Harness uses, HTTP 200 with ``{"data": null, "errors": […]}``.
- Rate limit: at most ``rate_limit`` accepted requests per ``rate_window`` seconds per account
  (sliding window, default 30 per 60 s); beyond that 429 ``{"code": "TOO_MANY_REQUESTS", …}`` without
  Retry-After. :meth:`HarnessSimulator.max_in_window` is the most authenticated requests (accepted or
  refused) seen in any window, so a test can show a client never even tried to exceed the limit.
- The GraphQL document is parsed (operations, variable definitions, arguments, nested input
  objects, aliases), so both the variables form and the doc's inline-literal form work. Malformed
  documents and validation failures answer HTTP 200 with ``errors[]``; a body that is not JSON with a
  ``query`` string answers HTTP 400 with ``errors[]``.
- Outcomes use the documented messages: success, unsupported type (for types outside
  ``supported_types``) and not found, the latter in ``data.artifactCleanup.message`` or, with
  ``not_found_in_errors = True``, in ``errors[]`` with ``data.artifactCleanup = null``.

State is guarded by a ``threading.Lock``: tests seed it from another thread than the server's.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .faults import Faults

DEFAULT_ACCOUNT = "acc1"
DEFAULT_API_KEY = "test-key"

#: Harness's internal names of the stream types the mutation supports (ECR, GCR, ACR, Docker Registry,
#: Artifactory, Nexus 2/3, Amazon AMI, Azure VMSS, Custom).
SUPPORTED_TYPES = frozenset(
    {"ECR", "GCR", "ACR", "DOCKER", "ARTIFACTORY", "NEXUS", "AMI", "AZURE_MACHINE_IMAGE", "CUSTOM"}
)

SUCCESS_MESSAGE = "Cleanup successful for Artifact stream with id: {id}"
UNSUPPORTED_MESSAGE = "Clean up not supported for artifact Stream type: {type}"
NOT_FOUND_MESSAGE = "Artifact stream not found for the id: {id}"
INVALID_KEY_MESSAGE = "Invalid API key"
RATE_LIMIT_MESSAGE = "Too many requests received, please try again later"


# A small GraphQL reader: enough of the October 2021 spec's executable documents for one mutation.


class GraphQLSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass
class FieldNode:
    name: str
    alias: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    selections: list[FieldNode] | None = None

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class VariableDefinition:
    name: str
    type: str
    default: Any = None
    has_default: bool = False

    @property
    def non_null(self) -> bool:
        return self.type.endswith("!")


@dataclass
class Operation:
    kind: str
    name: str | None
    variables: list[VariableDefinition]
    selections: list[FieldNode]


_TOKEN = re.compile(
    r"""
    (?P<ignored>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<block>\"\"\"(?:\\\"\"\"|(?!\"\"\").|\n)*?\"\"\")
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<punct>\.\.\.|[!$&():=@\[\]{}|])
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise GraphQLSyntaxError(f"Invalid Syntax : offending token '{text[pos]}' at offset {pos}")
        kind = m.lastgroup or ""
        if kind != "ignored":
            tokens.append((kind, m.group()))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self, value: str | None = None, kind: str | None = None) -> bool:
        if self.pos >= len(self.tokens):
            return False
        k, v = self.tokens[self.pos]
        return (value is None or v == value) and (kind is None or k == kind)

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        if not self.peek(value, kind):
            found = self.tokens[self.pos][1] if self.pos < len(self.tokens) else "<EOF>"
            raise GraphQLSyntaxError(f"Invalid Syntax : expected {value or kind}, offending token '{found}'")
        value_ = self.tokens[self.pos][1]
        self.pos += 1
        return value_

    def document(self) -> list[Operation]:
        ops: list[Operation] = []
        while self.pos < len(self.tokens):
            ops.append(self.operation())
        if not ops:
            raise GraphQLSyntaxError("Invalid Syntax : empty document")
        return ops

    def operation(self) -> Operation:
        if self.peek("{"):
            return Operation("query", None, [], self.selection_set())
        kind = self.take(kind="name")
        if kind == "fragment":
            raise GraphQLSyntaxError("Invalid Syntax : fragments are not supported by this simulator")
        if kind not in ("query", "mutation", "subscription"):
            raise GraphQLSyntaxError(f"Invalid Syntax : offending token '{kind}'")
        name = self.take(kind="name") if self.peek(kind="name") else None
        variables = self.variable_definitions() if self.peek("(") else []
        self.directives()
        return Operation(kind, name, variables, self.selection_set())

    def variable_definitions(self) -> list[VariableDefinition]:
        self.take("(")
        defs: list[VariableDefinition] = []
        while not self.peek(")"):
            self.take("$")
            name = self.take(kind="name")
            self.take(":")
            type_ = self.type_ref()
            definition = VariableDefinition(name, type_)
            if self.peek("="):
                self.take("=")
                definition.default, definition.has_default = self.value(const=True), True
            self.directives()
            defs.append(definition)
        self.take(")")
        return defs

    def type_ref(self) -> str:
        if self.peek("["):
            self.take("[")
            inner = f"[{self.type_ref()}]"
            self.take("]")
        else:
            inner = self.take(kind="name")
        if self.peek("!"):
            self.take("!")
            inner += "!"
        return inner

    def directives(self) -> None:
        while self.peek("@"):
            self.take("@")
            self.take(kind="name")
            if self.peek("("):
                self.arguments()

    def selection_set(self) -> list[FieldNode]:
        self.take("{")
        fields: list[FieldNode] = []
        while not self.peek("}"):
            if self.peek("..."):
                raise GraphQLSyntaxError("Invalid Syntax : fragments are not supported by this simulator")
            fields.append(self.field())
        self.take("}")
        if not fields:
            raise GraphQLSyntaxError("Invalid Syntax : empty selection set")
        return fields

    def field(self) -> FieldNode:
        name = self.take(kind="name")
        alias = None
        if self.peek(":"):
            self.take(":")
            alias, name = name, self.take(kind="name")
        node = FieldNode(name, alias)
        if self.peek("("):
            node.arguments = self.arguments()
        self.directives()
        if self.peek("{"):
            node.selections = self.selection_set()
        return node

    def arguments(self) -> dict[str, Any]:
        self.take("(")
        args: dict[str, Any] = {}
        while not self.peek(")"):
            name = self.take(kind="name")
            self.take(":")
            args[name] = self.value()
        self.take(")")
        return args

    def value(self, const: bool = False) -> Any:
        if self.peek("$"):
            if const:
                raise GraphQLSyntaxError("Invalid Syntax : a variable in a constant value")
            self.take("$")
            return Variable(self.take(kind="name"))
        if self.peek("["):
            self.take("[")
            items = []
            while not self.peek("]"):
                items.append(self.value(const))
            self.take("]")
            return items
        if self.peek("{"):
            self.take("{")
            obj: dict[str, Any] = {}
            while not self.peek("}"):
                key = self.take(kind="name")
                self.take(":")
                obj[key] = self.value(const)
            self.take("}")
            return obj
        if self.peek(kind="string"):
            return json.loads(self.take(kind="string"))
        if self.peek(kind="block"):
            return self.take(kind="block")[3:-3].replace('\\"""', '"""')
        if self.peek(kind="number"):
            text = self.take(kind="number")
            return float(text) if any(c in text for c in ".eE") else int(text)
        word = self.take(kind="name")
        return {"true": True, "false": False, "null": None}.get(word, word)


def parse_document(text: str) -> list[Operation]:
    """Parse a GraphQL executable document (no fragments); raise :class:`GraphQLSyntaxError`."""
    return _Parser(text).document()


def resolve(value: Any, variables: dict[str, Any]) -> Any:
    """``value`` with every variable replaced by its value."""
    if isinstance(value, Variable):
        return variables.get(value.name)
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, variables) for k, v in value.items()}
    return value


def _used_variables(value: Any) -> Iterable[str]:
    if isinstance(value, Variable):
        yield value.name
    elif isinstance(value, list):
        for v in value:
            yield from _used_variables(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _used_variables(v)


class GraphQLRequestError(Exception):
    """A request error in GraphQL's sense: answered in ``errors[]`` without executing anything."""


# The simulator.


class HarnessSimulator:
    vendor = "harness"

    def __init__(self) -> None:
        self.faults = Faults()
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to the defaults: one account ``acc1`` with key ``test-key``, no streams, 30 per 60 s."""
        with self._lock:
            #: Valid API keys per account id.
            self.api_keys: dict[str, set[str]] = {DEFAULT_ACCOUNT: {DEFAULT_API_KEY}}
            #: Artifact streams per account: stream id → stream type (``ECR``, ``JENKINS``, …).
            self.streams: dict[str, dict[str, str]] = {}
            self.supported_types: set[str] = set(SUPPORTED_TYPES)
            #: Report an unknown stream in ``errors[]`` (some Harness versions) instead of ``data``.
            self.not_found_in_errors = False
            #: HTTP status of a bad-key answer: 401 (default) or 200, both with ``errors[]``.
            self.auth_error_status = 401
            self.rate_limit = 30
            self.rate_window = 60.0
            #: Monotonic seconds the rate window is measured in; replace to drive time by hand.
            self.clock: Callable[[], float] = time.monotonic
            self._accepted: dict[str, deque[float]] = {}
            self._attempts: dict[str, deque[float]] = {}
            self._max_in_window: dict[str, int] = {}
            self._rate_limited: dict[str, int] = {}
            self._cleanups: dict[tuple[str, str], int] = {}

    # Seeding and observation (from any thread).

    def add_api_key(self, account: str, key: str) -> None:
        with self._lock:
            self.api_keys.setdefault(account, set()).add(key)

    def add_stream(self, account: str, stream_id: str, stream_type: str) -> None:
        with self._lock:
            self.api_keys.setdefault(account, set())
            self.streams.setdefault(account, {})[stream_id] = stream_type

    def remove_stream(self, account: str, stream_id: str) -> None:
        with self._lock:
            self.streams.get(account, {}).pop(stream_id, None)

    def cleanup_count(self, stream_id: str, account: str = DEFAULT_ACCOUNT) -> int:
        """How many times the stream was cleaned up successfully."""
        with self._lock:
            return self._cleanups.get((account, stream_id), 0)

    def max_in_window(self, account: str = DEFAULT_ACCOUNT) -> int:
        """The most authenticated requests (accepted or refused with 429) seen in any rate window."""
        with self._lock:
            return self._max_in_window.get(account, 0)

    def rate_limited_count(self, account: str = DEFAULT_ACCOUNT) -> int:
        """How many requests were refused with 429."""
        with self._lock:
            return self._rate_limited.get(account, 0)

    # HTTP.

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/gateway/api/graphql", self._graphql)

    async def _graphql(self, request: web.Request) -> web.Response:
        account = request.query.get("accountId", "")
        key = request.headers.get("x-api-key", "")
        raw = await request.read()
        with self._lock:
            if not account or key not in self.api_keys.get(account, set()):
                return _errors([INVALID_KEY_MESSAGE], status=self.auth_error_status)
            if not self._admit(account):
                return web.json_response(
                    {"code": "TOO_MANY_REQUESTS", "message": RATE_LIMIT_MESSAGE}, status=429
                )
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _errors(["The request body must be JSON with a 'query' string"], status=400)
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            return _errors(["'variables' must be a JSON object"], status=400)
        try:
            operation = self._select_operation(body["query"], body.get("operationName"))
            values = self._coerce_variables(operation, variables)
        except (GraphQLSyntaxError, GraphQLRequestError) as exc:
            return _errors([str(exc)])
        with self._lock:
            data, errors = self._execute(account, operation, values)
        answer: dict[str, Any] = {"data": data}
        if errors:
            answer["errors"] = errors
        return web.json_response(answer)

    def _admit(self, account: str) -> bool:
        """Count one authenticated request; ``False`` when it exceeds the window (caller holds the lock)."""
        now = self.clock()
        attempts = self._attempts.setdefault(account, deque())
        accepted = self._accepted.setdefault(account, deque())
        for stamps in (attempts, accepted):
            while stamps and now - stamps[0] >= self.rate_window:
                stamps.popleft()
        attempts.append(now)
        self._max_in_window[account] = max(self._max_in_window.get(account, 0), len(attempts))
        if len(accepted) >= self.rate_limit:
            self._rate_limited[account] = self._rate_limited.get(account, 0) + 1
            return False
        accepted.append(now)
        return True

    @staticmethod
    def _select_operation(query: str, operation_name: Any) -> Operation:
        operations = parse_document(query)
        if operation_name:
            for op in operations:
                if op.name == operation_name:
                    return op
            raise GraphQLRequestError(f"Unknown operation named '{operation_name}'.")
        if len(operations) > 1:
            raise GraphQLRequestError("Must provide operation name if query contains multiple operations.")
        return operations[0]

    @staticmethod
    def _coerce_variables(operation: Operation, variables: dict[str, Any]) -> dict[str, Any]:
        defined = {d.name: d for d in operation.variables}
        for f in operation.selections:
            for name in _used_variables(f.arguments):
                if name not in defined:
                    raise GraphQLRequestError(
                        f"Validation error (UndefinedVariable@[{f.key}]) : Undefined variable '{name}'"
                    )
        values: dict[str, Any] = {}
        for d in operation.variables:
            if d.name in variables:
                values[d.name] = variables[d.name]
            elif d.has_default:
                values[d.name] = d.default
            if d.non_null and values.get(d.name) is None:
                raise GraphQLRequestError(
                    f"Variable '{d.name}' has an invalid value: Variable '{d.name}' has coerced Null value "
                    f"for NonNull type '{d.type}'"
                )
        return values

    def _execute(
        self, account: str, operation: Operation, variables: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        root = "Mutation" if operation.kind == "mutation" else "Query"
        for f in operation.selections:
            if f.name != "__typename" and not (root == "Mutation" and f.name == "artifactCleanup"):
                message = (
                    f"Validation error (FieldUndefined@[{f.key}]) : "
                    f"Field '{f.name}' in type '{root}' is undefined"
                )
                return None, [{"message": message}]
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for f in operation.selections:
            if f.name == "__typename":
                data[f.key] = root
                continue
            payload, error = self._artifact_cleanup(account, f, variables)
            data[f.key] = payload
            if error is not None:
                errors.append(error)
        return data, errors

    def _artifact_cleanup(
        self, account: str, f: FieldNode, variables: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        where = [f.key]
        arg = resolve(f.arguments.get("input"), variables)
        stream_id = arg.get("artifactStreamId") if isinstance(arg, dict) else None
        if not isinstance(stream_id, str) or not stream_id:
            message = (
                f"Validation error (WrongType@[{f.key}]) : argument 'input' with value '{arg!r}' "
                "is not a valid 'ArtifactCleanupInput' - 'artifactStreamId' must be a non-null String"
            )
            return None, {"message": message, "path": where}
        if not f.selections:
            message = (
                f"Validation error (SubselectionRequired@[{f.key}]) : "
                "Subselection required for type 'ArtifactCleanUpPayload' of field 'artifactCleanup'"
            )
            return None, {"message": message, "path": where}
        for sub in f.selections:
            if sub.name not in ("message", "__typename"):
                message = (
                    f"Validation error (FieldUndefined@[{f.key}/{sub.key}]) : "
                    f"Field '{sub.name}' in type 'ArtifactCleanUpPayload' is undefined"
                )
                return None, {"message": message, "path": [*where, sub.key]}

        stream_type = self.streams.get(account, {}).get(stream_id)
        if stream_type is None:
            message = NOT_FOUND_MESSAGE.format(id=stream_id)
            if self.not_found_in_errors:
                return None, {"message": message, "path": where}
        elif stream_type.upper() not in self.supported_types:
            message = UNSUPPORTED_MESSAGE.format(type=stream_type)
        else:
            message = SUCCESS_MESSAGE.format(id=stream_id)
            self._cleanups[(account, stream_id)] = self._cleanups.get((account, stream_id), 0) + 1
        payload = {
            sub.key: (message if sub.name == "message" else "ArtifactCleanUpPayload") for sub in f.selections
        }
        return payload, None


def _errors(messages: list[str], status: int = 200) -> web.Response:
    """``errors[]``; a 200 answer also carries ``"data": null`` as GraphQL servers do."""
    body: dict[str, Any] = {"errors": [{"message": m} for m in messages]}
    if status == 200:
        body = {"data": None, **body}
    return web.json_response(body, status=status)
