"""A torch.export archive read as data, checked before torch is given it.

    check_pt2(path)          # UnsafeModel if loading it could run code; InvalidModel if it
                             # is no torch.export archive at all; None when it is plain data

``torch.export.load`` trusts its archive (torch 2.13, read in its source): a weight or
constant marked ``"use_pickle": true`` is unpickled with ``weights_only=False``; custom
(torchbind) and opaque objects are unpickled; the sample inputs fall back to a full
unpickle when the restricted one fails; ``guards_code`` is ``exec``'d by ``.module()``;
every symbolic expression goes through ``sympy.sympify`` (an ``eval``); a graph node's
target resolves any attribute path under ``torch``; an AOTInductor package loads a
shared library. Each is refused here, by reading the zip's directory, its JSON files and
the sample inputs' pickle opcodes, none of which is executed or unpickled.
"""

from __future__ import annotations

import ast
import io
import json
import pickletools
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from registry.errors import InvalidModel, UnsafeModel

MODEL = "model"  # torch.export.save writes one program, named "model"
_MAX_JSON_BYTES = 256 << 20
# Members of a torch.export.save archive (under its one root folder), and what each holds.
_MEMBERS = {
    "archive_format": "format",
    "archive_version": "format",
    "byteorder": "format",
    ".data/version": "format",
    ".data/serialization_id": "format",
    f"models/{MODEL}.json": "program",
    f"data/weights/{MODEL}_weights_config.json": "weights config",
    f"data/constants/{MODEL}_constants_config.json": "constants config",
    f"data/sample_inputs/{MODEL}.pt": "sample inputs",
}
_WEIGHT = re.compile(r"^data/weights/(weight_\d+)$")
_CONSTANT = re.compile(r"^data/constants/(tensor_\d+)$")
# What the sample inputs' pickle may name: tensors, their storages, an OrderedDict (the
# globals torch's own weights_only unpickler allows for plain tensors).
_STORAGES = (
    "Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
    "ComplexFloat", "ComplexDouble",
)  # fmt: skip
_PICKLE_GLOBALS = frozenset(
    {
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("collections", "OrderedDict"),
        ("torch", "Size"),
        *(("torch", f"{s}Storage") for s in _STORAGES),
    }
)
_SAMPLE_MEMBERS = re.compile(
    r"^[^/]+/(data\.pkl|\.format_version|\.storage_alignment|byteorder|version|"
    r"\.data/serialization_id|\.data/version|data/\d+)$"
)
# Graph node targets: ATen and prims ops, torch's higher-order ops, and Python's arithmetic.
_TARGET_PREFIXES = ("torch.ops.aten.", "torch.ops.prims.", "torch.ops.higher_order.")
OPERATORS = frozenset((
    "getitem", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "neg", "pos", "abs",
    "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "xor", "not_", "invert", "lshift",
    "rshift",
))  # fmt: skip
_SYMPY_FUNCTIONS = frozenset((
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt",
    "FloorToInt", "CeilDiv", "IntTrueDiv", "FloatTrueDiv", "LShift", "RShift",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt",
    "RoundDecimal", "ToFloat", "FloatPow", "PowByNatural", "Identity", "Max", "Min", "Abs", "Eq",
    "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "sqrt", "OpaqueUnaryFn_sqrt",
    # sympy's own, as srepr() writes them: Symbol('s31', positive=True, integer=True)
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "StrictLessThan", "LessThan",
    "StrictGreaterThan", "GreaterThan", "Equality", "Unequality", "BooleanTrue", "BooleanFalse",
    "Infinity", "NegativeInfinity", "Half", "One", "Zero", "NegativeOne", "Tuple", "floor",
    "ceiling", "Piecewise", "ExprCondPair", "ITE",
))  # fmt: skip
_SYMPY_CONSTANTS = frozenset({"oo", "zoo", "nan", "true", "false", "S", "pi", "E"})
_NUMBER_TEXT = re.compile(r"^[0-9.eE+\-]{1,64}$")
_SYMBOL = re.compile(r"^[a-z]+\d+$")  # s0, u3: shape symbols
_GUARD_METHODS = frozenset({"size", "stride", "storage_offset", "dim", "numel"})


def check_pt2(path: Path | IO[bytes], source: str | None = None) -> None:
    """Refuse (UnsafeModel) an archive whose loading could run code, or (InvalidModel) one
    that is no torch.export archive; return None for an archive of plain data."""
    where = source or str(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidModel(where, f"not a torch.export archive ({exc}); {HOW_TO_EXPORT}") from exc
    with archive:
        _Check(archive, where).run()


HOW_TO_EXPORT = (
    "export it with torch.export: "
    "program = torch.export.export(model.eval(), (x,)); "
    'torch.export.save(program, "model.pt2")'
)


class _Check:
    def __init__(self, archive: zipfile.ZipFile, source: str) -> None:
        self.archive = archive
        self.source = source
        self.root = ""

    def refuse(self, why: str) -> UnsafeModel:
        return UnsafeModel(self.source, why)

    def run(self) -> None:
        members = self._members()
        if members.get("archive_format") is None:
            raise InvalidModel(
                self.source,
                f"it has no archive_format member: not torch.export.save output; {HOW_TO_EXPORT}",
            )
        if self._read("archive_format").strip() != b"pt2":
            raise InvalidModel(self.source, f"its archive_format is not pt2; {HOW_TO_EXPORT}")
        for needed in (f"models/{MODEL}.json", f"data/weights/{MODEL}_weights_config.json"):
            if needed not in members:
                raise InvalidModel(self.source, f"it lacks {needed}; {HOW_TO_EXPORT}")
        weights = self._payload_config(f"data/weights/{MODEL}_weights_config.json", "weight")
        constants_config = f"data/constants/{MODEL}_constants_config.json"
        constants = (
            self._payload_config(constants_config, "constant")
            if constants_config in members
            else set()
        )
        for name in members:
            if (m := _WEIGHT.match(name)) and m.group(1) not in weights:
                raise self.refuse(f"member {name!r} is no weight its config names")
            if (m := _CONSTANT.match(name)) and m.group(1) not in constants:
                raise self.refuse(f"member {name!r} is no constant its config names")
        for file in weights:
            if f"data/weights/{file}" not in members:
                raise InvalidModel(self.source, f"its weights config names {file}, not in it")
        for file in constants:
            if f"data/constants/{file}" not in members:
                raise InvalidModel(self.source, f"its constants config names {file}, not in it")
        self._program(self._json(f"models/{MODEL}.json"))
        sample = f"data/sample_inputs/{MODEL}.pt"
        if sample in members:
            self._sample_inputs(self._read(sample))

    # -- the zip ------------------------------------------------------------------------------
    def _members(self) -> dict[str, zipfile.ZipInfo]:
        infos = self.archive.infolist()
        if not infos:
            raise InvalidModel(self.source, f"the archive is empty; {HOW_TO_EXPORT}")
        roots = {info.filename.split("/", 1)[0] for info in infos}
        if len(roots) != 1 or any("/" not in i.filename for i in infos):
            raise self.refuse("its members are not all under one folder, as torch.export writes")
        self.root = roots.pop() + "/"
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename[len(self.root) :]
            if info.is_dir() and not name:
                continue
            if name in members:
                raise self.refuse(f"member {name!r} appears twice")
            if ".." in name.split("/") or "\\" in name:
                raise self.refuse(f"member name {info.filename!r} leaves the archive")
            if name.startswith(("data/constants/custom_obj_", "data/constants/opaque_obj_")):
                raise self.refuse(
                    f"member {name!r} is a custom or opaque object, which loads by unpickling"
                )
            if name not in _MEMBERS and not _WEIGHT.match(name) and not _CONSTANT.match(name):
                raise self.refuse(
                    f"unknown member {name!r} (torch.export.save writes no such file)"
                )
            members[name] = info
        return members

    def _read(self, name: str) -> bytes:
        info = self.archive.getinfo(self.root + name)
        if info.file_size > _MAX_JSON_BYTES and not name.startswith("data/"):
            raise self.refuse(f"member {name!r} is {info.file_size} bytes, past any real program")
        try:
            return self.archive.read(info)
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
            raise InvalidModel(self.source, f"member {name!r} can't be read ({exc})") from exc

    def _json(self, name: str) -> Any:
        try:
            return json.loads(self._read(name))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise InvalidModel(self.source, f"member {name!r} is not JSON ({exc})") from exc

    # -- weights and constants ----------------------------------------------------------------
    def _payload_config(self, name: str, kind: str) -> set[str]:
        config = self._json(name)
        entries = config.get("config") if isinstance(config, dict) else None
        if not isinstance(entries, dict):
            raise InvalidModel(self.source, f"{name} has no config mapping")
        files: set[str] = set()
        for fqn, meta in entries.items():
            if not isinstance(meta, dict):
                raise InvalidModel(self.source, f"{name}: entry {fqn!r} is not an object")
            path_name = meta.get("path_name")
            if meta.get("use_pickle") is not False:
                raise self.refuse(
                    f"{kind} {fqn!r} is pickled (use_pickle in {Path(name).name}): loading it "
                    "would unpickle, which runs code"
                )
            if not isinstance(path_name, str):
                raise InvalidModel(self.source, f"{name}: entry {fqn!r} has no path_name")
            if path_name.startswith(("custom_obj_", "opaque_obj_")):
                raise self.refuse(
                    f"{kind} {fqn!r} is a custom or opaque object ({path_name}): loading it "
                    "would unpickle, which runs code"
                )
            pattern = r"^weight_\d+$" if kind == "weight" else r"^tensor_\d+$"
            if not re.match(pattern, path_name):
                raise self.refuse(f"{kind} {fqn!r} is stored as {path_name!r}, not a raw tensor")
            if not isinstance(meta.get("tensor_meta"), dict):
                raise InvalidModel(self.source, f"{name}: entry {fqn!r} has no tensor_meta")
            files.add(path_name)
        return files

    # -- the program ----------------------------------------------------------------------------
    def _program(self, program: Any) -> None:
        if not isinstance(program, dict):
            raise InvalidModel(self.source, f"models/{MODEL}.json is not an object")
        for guard in program.get("guards_code") or ():
            _check_guard(self, guard)
        for key in program.get("range_constraints") or {}:
            _check_expr(self, key)
        for node in _walk(program):
            if "as_custom_obj" in node or "custom_obj" in node or node.get("custom_obj_values"):
                raise self.refuse("the program holds a custom object, which loads by unpickling")
            if "expr_str" in node:
                _check_expr(self, node["expr_str"])
            if "as_operator" in node:
                _check_target(self, node["as_operator"])
            if isinstance(node.get("target"), str) and "inputs" in node and "outputs" in node:
                _check_target(self, node["target"])

    # -- sample inputs ----------------------------------------------------------------------------
    def _sample_inputs(self, raw: bytes) -> None:
        if not raw:
            return
        try:
            inner = zipfile.ZipFile(io.BytesIO(raw))
        except zipfile.BadZipFile:
            raise self.refuse(
                "its sample inputs are a legacy pickle, which loads by unpickling"
            ) from None
        with inner:
            names = inner.namelist()
            if len({n.split("/", 1)[0] for n in names}) != 1 or len(set(names)) != len(names):
                raise self.refuse("its sample inputs archive is not laid out as torch.save's")
            for name in names:
                if not _SAMPLE_MEMBERS.match(name):
                    raise self.refuse(f"its sample inputs hold an unknown member {name!r}")
            pickles = [n for n in names if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise self.refuse("its sample inputs lack torch.save's one data.pkl")
            _check_pickle(self, inner.read(pickles[0]))


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_target(check: _Check, target: Any) -> None:
    if not isinstance(target, str):
        raise check.refuse(f"a graph node's target {target!r} is not an operator name")
    if target.startswith(_TARGET_PREFIXES) and "__" not in target:
        return
    module, _, name = target.partition(".")
    if module == "_operator" and name in OPERATORS:
        return
    if module == "math" and re.fullmatch(r"[a-z0-9_]+", name) and not name.startswith("_"):
        return
    raise check.refuse(
        f"a graph node calls {target!r}, which is no ATen operator (only torch.ops.aten, "
        "prims and higher-order operators are loaded)"
    )


def _check_expr(check: _Check, text: Any) -> None:
    """A symbolic shape expression (sympify'd on load): symbols, numbers, arithmetic,
    comparisons and torch's sympy functions, nothing else."""
    if not isinstance(text, str) or len(text) > 10_000:
        raise check.refuse(f"a shape expression {str(text)[:80]!r} is not an expression")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        raise check.refuse(f"a shape expression {text[:80]!r} does not parse") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if not (
                _SYMBOL.match(node.id) or node.id in _SYMPY_FUNCTIONS or node.id in _SYMPY_CONSTANTS
            ):
                raise check.refuse(f"a shape expression names {node.id!r}: {text[:80]!r}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _SYMPY_FUNCTIONS:
                raise check.refuse(f"a shape expression calls something odd: {text[:80]!r}")
            for keyword in node.keywords:  # assumptions: positive=True, integer=True
                given = keyword.value
                if not (
                    keyword.arg
                    and keyword.arg.isalpha()
                    and isinstance(given, ast.Constant)
                    and given.value in (True, False, None)
                ):
                    raise check.refuse(f"a shape expression passes odd arguments: {text[:80]!r}")
        elif isinstance(node, ast.Constant):
            value: Any = node.value
            if isinstance(value, str):
                if not (_SYMBOL.match(value) or _NUMBER_TEXT.match(value)):
                    raise check.refuse(f"a shape expression holds {value!r}: {text[:80]!r}")
            elif not isinstance(value, int | float) and value is not None:
                raise check.refuse(f"a shape expression holds {value!r}: {text[:80]!r}")
        elif not isinstance(node, (*_EXPR_NODES, ast.keyword)):
            raise check.refuse(f"a shape expression holds {type(node).__name__}: {text[:80]!r}")


def _check_guard(check: _Check, text: Any) -> None:
    """A guard (exec'd as Python by ``.module()``): comparisons of ``L['x'].size()[i]``
    and the like with numbers, nothing else."""
    if not isinstance(text, str) or len(text) > 10_000:
        raise check.refuse(f"a guard {str(text)[:80]!r} is not an expression")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        raise check.refuse(f"a guard {text[:80]!r} does not parse") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id != "L" and not _SYMBOL.match(node.id):
                raise check.refuse(f"a guard names {node.id!r}: {text[:80]!r}")
        elif isinstance(node, ast.Attribute):
            if node.attr not in _GUARD_METHODS:
                raise check.refuse(f"a guard reads .{node.attr}: {text[:80]!r}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Attribute) or node.keywords:
                raise check.refuse(f"a guard calls something odd: {text[:80]!r}")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float | str):
                raise check.refuse(f"a guard holds {node.value!r}: {text[:80]!r}")
            if isinstance(node.value, str) and "__" in node.value:
                raise check.refuse(f"a guard holds {node.value!r}: {text[:80]!r}")
        elif not isinstance(node, (*_EXPR_NODES, ast.Subscript, ast.Load)):
            raise check.refuse(f"a guard holds {type(node).__name__}: {text[:80]!r}")


_EXPR_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.Name,
    ast.Call,
    ast.Constant,
    ast.Load,
    ast.Tuple,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)


def _check_pickle(check: _Check, data: bytes) -> None:
    """Every global the pickle names is a tensor part; no opcode that names a class."""
    # The strings pushed since the last other opcode: exactly the top of the stack, so a
    # STACK_GLOBAL's module and name are known (or the pickle is refused).
    recent: list[str | None] = []
    memo: dict[int, str | None] = {}
    try:
        for opcode, arg, _ in pickletools.genops(data):
            name = opcode.name
            if name in ("INST", "OBJ", "EXT1", "EXT2", "EXT4"):
                raise check.refuse(f"its sample inputs' pickle uses {name}, which builds objects")
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                _allowed_global(check, module, attr)
            elif name == "STACK_GLOBAL":
                if len(recent) < 2 or recent[-1] is None or recent[-2] is None:
                    raise check.refuse("its sample inputs' pickle names a global it computes")
                _allowed_global(check, str(recent[-2]), str(recent[-1]))
            elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                recent.append(str(arg))
                continue
            elif name == "MEMOIZE":
                memo[len(memo)] = recent[-1] if recent else None
                continue
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(str(arg))] = recent[-1] if recent else None
                continue
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                recent.append(memo.get(int(str(arg))))
                continue
            recent = []
    except ValueError as exc:
        raise check.refuse(f"its sample inputs' pickle is malformed ({exc})") from exc


def _allowed_global(check: _Check, module: str, attr: str) -> None:
    if (module, attr) not in _PICKLE_GLOBALS:
        raise check.refuse(
            f"its sample inputs' pickle calls {module}.{attr}: loading it would run code"
        )
