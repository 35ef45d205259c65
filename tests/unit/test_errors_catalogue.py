"""The error catalogue: docs/errors.md is the generator's output, every code raised anywhere in src/
is declared in agnes.errors.CATALOG, and every default hint names a concrete action."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agnes import errors_doc
from agnes.errors import CATALOG
from agnes.settings import ENV_VARS

SRC = Path(__file__).resolve().parents[2] / "src" / "agnes"
# Callables that take an error code: name -> (position of the code argument, -1 = keyword `code=` only;
# the module defining it). AgnesError's subclasses are added by the scan.
# Another module defining the same name means something else there (engine/catalog.py's QueryRefused).
CODE_TAKERS = {"AgnesError": (0, "errors.py"), "QueryRefused": (0, "engine/sql_guard.py"),
               "raise_error": (-1, "control/health_errors.py"), "resolve": (-1, "control/health_errors.py"),
               "_fail": (3, "jobs/sync.py")}
# The analyst client (agnes login/catalog/pull/query) has its own client-side codes; the API never returns them.
NOT_API = ("client/",)
# Dicts whose keys (HTTP_STATUS) or values (_BY_STATUS) are error codes.
CODE_KEY_DICTS, CODE_VALUE_DICTS = {"HTTP_STATUS"}, {"_BY_STATUS"}
# Calls that pass a code held in a variable, and why each can only carry catalogued codes.
DYNAMIC_OK = {
    ("api/errors.py", "handle_http_exception"): "a code from _BY_STATUS (scanned) or 'request_error'",
    ("api/errors.py", "error_response"): "copies exc.code of an AgnesError, which refuses undeclared codes",
    ("services/query.py", "to_agnes_error"): "engine codes (scanned) and falls back to query_failed",
    ("services/health.py", "health_report"): "reads codes stored by raise_error (scanned)",
    ("jobs/sync.py", "_publish"): "resolves the codes of SYNC_CODES (scanned)",
    ("jobs/sync.py", "_fail"): "resolves SYNC_CODES and forwards its own `code` parameter (callers scanned)",
}


# Calls that pass an HTTP status held in a variable, and why it can only be a declared one.
DYNAMIC_STATUS_OK = {
    ("api/errors.py", "handle_http_exception"): "_BY_STATUS's status for its code, else request_error with "
                                                "a 4xx of the HTTP layer (test_http_layer_statuses_are_declared)",
    ("services/query.py", "to_agnes_error"): "engine.HTTP_STATUS (scanned as code -> status)",
}
# Modules whose AgnesErrors never become an HTTP answer, and why.
NOT_HTTP = {"jobs/sync.py": "raised inside a sync job: recorded on the job and in GET /api/health errors"}
# Dicts mapping an error code to the HTTP status it is answered with.
CODE_STATUS_DICTS = {"HTTP_STATUS"}


@dataclass
class Scan:
    codes: dict[str, list[str]] = field(default_factory=dict)  # code -> ["file:line", ...]
    dynamic: list[tuple[str, str, int]] = field(default_factory=list)  # (file, function, line)
    # HTTP answers: (code, status or None for the catalogue's default, "file:line")
    http: list[tuple[str, int | None, str]] = field(default_factory=list)
    dynamic_status: list[tuple[str, str, int]] = field(default_factory=list)  # (file, function, line)
    # hints written where an error is raised: (code or None, the hint's literal text, "file:line")
    hints: list[tuple[str | None, str, str]] = field(default_factory=list)

    def add(self, code: str, where: str) -> None:
        self.codes.setdefault(code, []).append(where)


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _str(node: ast.AST | None, consts: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return consts.get(node.id)
    return None


def _text(node: ast.AST | None, consts: dict[str, str]) -> list[str]:
    """The literal text of a hint expression, one string per way it can come out (an `x if c else y`
    gives two); f-string fields count as `{}` unless they name a module constant. [] when not literal."""
    if node is None:
        return []
    if (s := _str(node, consts)) is not None:
        return [s]
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else
                        (_str(v.value, consts) or "{}") if isinstance(v, ast.FormattedValue) else "{}"
                        for v in node.values)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left, consts) or ["{}"], _text(node.right, consts) or ["{}"]
        return [a + b for a in left for b in right]
    if isinstance(node, ast.IfExp):
        return _text(node.body, consts) + _text(node.orelse, consts)
    return []


def code_takers(files: dict[str, str]) -> tuple[dict[str, int], dict[str, set[str]]]:
    """Callables that take an error code (name -> position of the code argument), and per module the
    names it defines itself with another meaning (engine/catalog.py has its own QueryRefused and _fail)."""
    takers = {name: idx for name, (idx, _) in CODE_TAKERS.items()}
    bases_of: dict[str, list[str]] = {}
    shadowed: dict[str, set[str]] = {}
    for rel, text in files.items():
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if node.name in CODE_TAKERS and CODE_TAKERS[node.name][1] != rel:
                shadowed.setdefault(rel, set()).add(node.name)
            elif isinstance(node, ast.ClassDef):
                bases_of.setdefault(node.name, []).extend(b for b in map(_name, node.bases) if b)
    changed = True
    while changed:  # subclasses of AgnesError (transitively) take a code first, like AgnesError
        changed = False
        for name, bases in bases_of.items():
            if name not in takers and any(takers.get(b) == 0 for b in bases):
                takers[name] = 0
                changed = True
    for rel, text in files.items():  # a same-named class elsewhere that does not derive from a taker
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.name in takers and node.name not in CODE_TAKERS \
                    and not any(takers.get(b) == 0 for b in map(_name, node.bases) if b):
                shadowed.setdefault(rel, set()).add(node.name)
    return takers, shadowed


def scan_source(text: str, rel: str, scan: Scan, takers: dict[str, int], shadowed: set[str]) -> None:
    """Collect the error codes one module raises, records or maps."""
    tree = ast.parse(text)
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
              for t in n.targets if isinstance(t, ast.Name) and t.id.isupper()}
    parents: dict[ast.AST, ast.AST] = {c: p for p in ast.walk(tree) for c in ast.iter_child_nodes(p)}

    def function_of(node: ast.AST) -> str:
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                return node.name
        return "<module>"

    def class_code(node: ast.AST) -> str | None:
        """The `code = "..."` attribute of the class a method belongs to (engine exceptions)."""
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.ClassDef):
                return next((_str(n.value, consts) for n in node.body if isinstance(n, ast.Assign)
                             and "code" in {_name(t) for t in n.targets}), None)
        return None

    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call):
            callee = _name(node.func)
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            arg: ast.AST | None = kw.get("code")
            takes = callee in takers and callee not in shadowed
            if takes and arg is None and 0 <= takers[callee] < len(node.args):
                arg = node.args[takers[callee]]
            hint = kw.get("hint")
            if hint is None and takes and callee == "QueryRefused" and len(node.args) > 2:
                hint = node.args[2]
            code = _str(arg, consts)
            scan.hints.extend((code, text, where) for text in _text(hint, consts))
            if arg is None:
                continue
            if code is not None:
                scan.add(code, where)
            else:
                scan.dynamic.append((rel, function_of(node), node.lineno))
            if takes and takers[callee] == 0 and callee not in ("StartupError", "QueryRefused") \
                    and rel not in NOT_HTTP:
                status = kw.get("status")  # an AgnesError is an HTTP answer (StartupError stops the process)
                if status is not None and not (isinstance(status, ast.Constant) and isinstance(status.value, int)):
                    scan.dynamic_status.append((rel, function_of(node), node.lineno))
                elif code is not None:
                    scan.http.append((code, status.value if isinstance(status, ast.Constant) else None, where))
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "hint"
                                                  for t in node.targets):
            scan.hints.extend((class_code(node), text, where) for text in _text(node.value, consts))
        elif isinstance(node, ast.Assign):
            names = {_name(t) for t in node.targets}
            if isinstance(node.value, ast.Dict) and names & CODE_STATUS_DICTS:
                for key, value in zip(node.value.keys, node.value.values, strict=True):
                    if (code := _str(key, consts)) is not None and isinstance(value, ast.Constant):
                        scan.http.append((code, value.value, where))
            if isinstance(node.value, ast.Dict) and names & (CODE_KEY_DICTS | CODE_VALUE_DICTS):
                for item in node.value.keys if names & CODE_KEY_DICTS else node.value.values:
                    if (code := _str(item, consts)) is not None:
                        scan.add(code, where)
            elif "code" in names or "SYNC_CODES" in names:  # class attribute `code = "..."`, local code = "..."
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                for item in values:
                    if (code := _str(item, consts)) is not None:
                        scan.add(code, where)


def scan_src(root: Path = SRC) -> Scan:
    files = {rel: p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py"))
             if not (rel := str(p.relative_to(root))).startswith(NOT_API)}
    takers, shadowed = code_takers(files)
    scan = Scan()
    for rel, text in files.items():
        scan_source(text, rel, scan, takers, shadowed.get(rel, set()))
    return scan


# --- the doc ------------------------------------------------------------------------------

def test_docs_errors_md_is_the_generators_output():
    committed = errors_doc.DOC_PATH.read_text(encoding="utf-8") if errors_doc.DOC_PATH.is_file() else ""
    assert committed == errors_doc.render(), (
        "docs/errors.md is stale or hand-edited: run `python -m agnes.errors_doc --write` (or `make errors-doc`)")


def test_every_code_is_in_the_doc_and_nothing_else():
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", errors_doc.DOC_PATH.read_text(encoding="utf-8"), re.M))
    assert documented == set(CATALOG), (
        f"missing from docs/errors.md: {sorted(set(CATALOG) - documented)}; "
        f"stale in docs/errors.md: {sorted(documented - set(CATALOG))}")


def test_check_mode_fails_on_a_stale_doc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]):
    stale = tmp_path / "errors.md"
    stale.write_text(errors_doc.render().replace("`not_found`", "`gone`"), encoding="utf-8")
    monkeypatch.setattr(errors_doc, "DOC_PATH", stale)
    assert errors_doc.main(["--check"]) == 1
    assert "errors_doc --write" in capsys.readouterr().err
    assert errors_doc.main(["--write"]) == 0 and errors_doc.main(["--check"]) == 0


# --- the code -----------------------------------------------------------------------------

def test_every_code_raised_in_src_is_catalogued():
    scan = scan_src()
    assert len(scan.codes) > 40, "the scan found too few codes; has the raising style changed?"
    undeclared = {c: w for c, w in scan.codes.items() if c not in CATALOG}
    assert not undeclared, f"codes raised but not declared in agnes.errors.CATALOG: {undeclared}"


def test_codes_from_variables_come_only_from_known_sites():
    unexpected = [d for d in scan_src().dynamic if (d[0], d[1]) not in DYNAMIC_OK]
    assert not unexpected, (f"error codes passed from a variable at {unexpected}: use a literal code, or add the "
                            "site to DYNAMIC_OK with the reason it can only carry catalogued codes")


def test_statuses_at_raise_sites_are_declared():
    scan = scan_src()
    assert len(scan.http) > 40, "the scan found too few raise sites; has the raising style changed?"
    wrong = []
    for code, status, where in scan.http:
        spec = CATALOG.get(code)
        if spec is None:
            continue  # reported by test_every_code_raised_in_src_is_catalogued
        status = status or spec.status
        if status in spec.also or (spec.where == "api" and status == spec.status):
            continue
        wrong.append(f"{where}: {code} answered with HTTP {status}, but CATALOG declares "
                     f"{spec.status} ({spec.where}) and also={spec.also}")
    assert not wrong, ("add the status to the code's ErrorSpec `also` (docs/errors.md lists it), or use another "
                       "code:\n" + "\n".join(wrong))
    unexpected = [d for d in scan.dynamic_status if (d[0], d[1]) not in DYNAMIC_STATUS_OK]
    assert not unexpected, f"status= from a variable at {unexpected}: pass a literal, or add the site to " \
                           "DYNAMIC_STATUS_OK with the reason it can only carry declared statuses"


def test_http_layer_statuses_are_declared():
    """Every 4xx Litestar can raise is answered with a code whose CATALOG entry declares that status."""
    from http import HTTPStatus

    from litestar.exceptions import HTTPException

    from agnes.api.errors import handle_http_exception

    for status in (s.value for s in HTTPStatus if 400 <= s.value < 500):
        answer = handle_http_exception(None, HTTPException(status_code=status))  # type: ignore[arg-type]
        code = answer.content.error.code
        assert answer.status_code == status, (status, code)
        assert status == CATALOG[code].status or status in CATALOG[code].also, \
            f"HTTP {status} comes back as {code}, whose CATALOG entry does not declare it"


def test_the_scan_catches_an_undeclared_code(tmp_path: Path):
    (tmp_path / "errors.py").write_text("class AgnesError(Exception): ...")
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "api.py").write_text('raise AgnesError("client_side_only")')
    (tmp_path / "mod.py").write_text('''
LATE = "made_up_late"
class Refusal(AgnesError):
    pass
class Engine(Exception):
    code = "made_up_attr"
def f(x):
    raise AgnesError("made_up_code", "m")
def g():
    raise Refusal("made_up_subclass")
async def h(conn, x):
    await raise_error(conn, code=LATE, message="m")
    raise AgnesError(x)
''')
    (tmp_path / "other.py").write_text('''
class Refusal(Exception):
    def __init__(self, message): ...
def k():
    raise Refusal("a message, not a code")
''')
    scan = scan_src(tmp_path)
    assert set(scan.codes) == {"made_up_code", "made_up_attr", "made_up_subclass", "made_up_late"}
    assert [(f, fn) for f, fn, _ in scan.dynamic] == [("mod.py", "h")]


def test_the_scan_catches_statuses_and_hints_at_raise_sites(tmp_path: Path):
    (tmp_path / "errors.py").write_text("class AgnesError(Exception): ...\nclass StartupError(AgnesError): ...")
    (tmp_path / "mod.py").write_text('''
ENV = "AGNES_QUERY_TIMEOUT"
HTTP_STATUS = {"query_timeout": 408}
class Slow(Exception):
    code = "query_timeout"
    def __init__(self, n):
        self.hint = f"Wait {n} s."
def f(path, s):
    raise AgnesError("data_dir_unusable", "m", status=500, hint=f"Fix {path} by hand.")
def g():
    raise StartupError("config_invalid", status=400, hint="Set " + ENV + " lower." if s else "Try later.")
def h(s):
    raise AgnesError("bad_request", status=s)
''')
    scan = scan_src(tmp_path)
    assert sorted(scan.http) == [("data_dir_unusable", 500, "mod.py:9"), ("query_timeout", 408, "mod.py:3")]
    assert [(f, fn) for f, fn, _ in scan.dynamic_status] == [("mod.py", "h")]
    assert sorted(t for _, t, _ in scan.hints) == ["Fix {} by hand.", "Set AGNES_QUERY_TIMEOUT lower.",
                                                   "Try later.", "Wait {} s."]
    assert [t for c, t, _ in scan.hints if not actionable(c, t)] == ["Wait {} s.", "Fix {} by hand.", "Try later."]


# --- the hints ----------------------------------------------------------------------------

ENDPOINT = re.compile(r"\b(GET|POST|PATCH|DELETE|PUT) /|(?<![\w.])/(api|auth|schema)/")
ENV_VAR = re.compile(r"\$?\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b")
COMMAND = re.compile(r"`(agnes|docker|python|make)\b[^`]*`")
HEADER = re.compile(r"\b(Retry-After|Allow|Accept|Content-Type|Authorization|X-Setup-Token)\b")


def _source_type_env() -> set[str]:
    """Variables the source types read (connector secrets and their server-side fallbacks)."""
    from agnes.services.source_types import SOURCE_TYPES

    names: set[str] = set()
    for stype in SOURCE_TYPES.values():
        for spec in (*stype.secrets, *stype.options):
            names |= {v for v in (getattr(spec, "env", None), getattr(spec, "fallback_env", None)) if v}
    return names


KNOWN_ENV = set(ENV_VARS) | {"KEBOOLA_STORAGE_TOKEN"} | _source_type_env()


def concrete_actions(hint: str) -> list[str]:
    """What in `hint` an agent can act on: endpoints, env vars, commands, headers."""
    found = [m.group(0) for m in ENDPOINT.finditer(hint)] + [m.group(0) for m in COMMAND.finditer(hint)]
    found += [m.group(1) for m in ENV_VAR.finditer(hint) if m.group(1) in KNOWN_ENV]
    found += [m.group(0) for m in HEADER.finditer(hint)]
    return found


SQL_FIX = re.compile(r"\b(SELECT|WHERE|LIMIT|FROM|JOIN|PIVOT|CAST|GROUP BY)\b|';'")


def actionable(code: str | None, hint: str) -> bool:
    """An endpoint, env var, command or header to use; for SQL errors, the SQL to write instead."""
    sql_error = bool(code) and (code.startswith("query_") or code in ("multiple_statements",  # type: ignore[union-attr]
                                                                      "function_not_allowed"))
    return bool(concrete_actions(hint) or (sql_error and SQL_FIX.search(hint)))


def test_every_hint_names_a_concrete_action():
    vague = {code: spec.hint for code, spec in CATALOG.items() if not concrete_actions(spec.hint)}
    assert not vague, f"hints that name no endpoint, env var, command or header: {vague}"


def test_every_hint_written_at_a_raise_site_names_a_concrete_action():
    """Hints written where an error is raised (hint=..., f-string text included) replace the catalogue's."""
    scan = scan_src()
    assert len(scan.hints) > 30, "the scan found too few hints; has the raising style changed?"
    vague = [f"{where} ({code}): {text!r}" for code, text, where in scan.hints if not actionable(code, text)]
    assert not vague, "hints that name no endpoint, env var, command or header (or, for SQL errors, the SQL " \
                      "to write):\n" + "\n".join(vague)


def test_env_vars_named_in_hints_exist():
    named = {m.group(1) for spec in CATALOG.values() for m in ENV_VAR.finditer(spec.hint)}
    unknown = sorted(named - KNOWN_ENV)
    assert not unknown, f"hints name environment variables Agnes does not read: {unknown}"


def test_commands_named_in_hints_exist():
    from typer.main import get_command

    from agnes.cli import app

    root = get_command(app)
    for spec in CATALOG.values():
        for m in re.finditer(r"`agnes ([a-z-]+)(?: ([a-z-]+))?", spec.hint):
            cmd = root.commands.get(m.group(1))  # type: ignore[attr-defined]
            assert cmd is not None, f"`agnes {m.group(1)}` in a hint is not a CLI command: {spec.hint}"
            if m.group(2) and hasattr(cmd, "commands"):
                assert m.group(2) in cmd.commands, f"`agnes {m.group(1)} {m.group(2)}` is not a CLI command"


def test_a_vague_hint_is_caught():
    assert not concrete_actions("Fix the problem and try again.")
    assert concrete_actions("Retry with POST /api/sync/trigger.")
    assert concrete_actions("Set AGNES_QUERY_TIMEOUT higher.")
    assert concrete_actions("Run `agnes contract check PATH`.")
