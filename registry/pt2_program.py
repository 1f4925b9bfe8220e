"""A torch.export archive's program rebuilt as a torch.fx module, without torch's deserializer.

    module = load_program(path)      # None: the program uses more than plain ATen calls;
    if module is None:               # torch.export.load(path).module() then does the work
        ...

``torch.export.load`` imports ``torch._dynamo`` (its deserializer imports it at module
level; about 1.1 s of a 2-core machine's time, more than importing torch itself) and
rebuilds every tensor as a fake one to re-check shapes symbolically. A model registered,
evaluated or promoted from the CLI needs neither: its graph is a list of ATen calls whose
arguments are JSON, and its weights are raw bytes (`registry.pt2` refuses pickled ones). This
module reads exactly that subset and builds the same graph torch's ``.module()`` would, as an
``fx.GraphModule`` with the weights as its parameters and buffers. Anything outside it
(higher-order operators such as ``cond``, custom objects, buffer mutations, tokens, nested
inputs, another schema major version, a non-CPU weight) makes it answer None, and the caller
falls back to torch's own loader: the result is the same module either way, only the import
differs. Call it only on an archive `registry.pt2.check_pt2` passed.
"""

from __future__ import annotations

import json
import math
import operator
import re
import sys
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from registry.pt2 import MODEL, OPERATORS

if TYPE_CHECKING:
    import torch

SCHEMA_MAJOR = 8  # torch.export's serialization schema this reader knows (torch 2.13)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SYMBOL = re.compile(r"Symbol\('([a-z]+\d+)'")
_DTYPES = {
    1: "uint8",
    2: "int8",
    3: "int16",
    4: "int32",
    5: "int64",
    6: "float16",
    7: "float32",
    8: "float64",
    9: "complex32",
    10: "complex64",
    11: "complex128",
    12: "bool",
    13: "bfloat16",
    28: "uint16",
    29: "float8_e4m3fn",
    30: "float8_e5m2",
    31: "float8_e4m3fnuz",
    32: "float8_e5m2fnuz",
    34: "uint32",
    35: "uint64",
}  # fmt: skip  (torch._export.serde.schema.ScalarType -> torch attribute)
_LAYOUTS = {1: "sparse_coo", 2: "sparse_csr", 3: "sparse_csc", 4: "sparse_bsr", 5: "sparse_bsc",
            6: "_mkldnn", 7: "strided"}  # fmt: skip
_MEMORY_FORMATS = {1: "contiguous_format", 2: "channels_last", 3: "channels_last_3d",
                   4: "preserve_format"}  # fmt: skip
_SPECIAL_FLOATS = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


@dataclass(frozen=True)
class InputSpec:
    """A user input as traced: each size an int (static) or its symbol (dynamic), as the
    placeholder's ``meta["val"]`` (torch puts a fake tensor there; readers take ``.shape``)."""

    shape: tuple[int | str, ...]
    dtype: torch.dtype

    @classmethod
    def of(cls, meta: Mapping[str, Any]) -> InputSpec:
        sizes: list[int | str] = []
        for size in meta["sizes"]:
            kind, body = _only(size)
            if kind == "as_int":
                sizes.append(int(body))
            else:  # as_expr: {"expr_str": "Symbol('s31', positive=True, ...)", "hint": ...}
                text = str(body.get("expr_str", "?")) if isinstance(body, dict) else "?"
                symbol = _SYMBOL.search(text)
                sizes.append(symbol.group(1) if symbol else text)
        return cls(tuple(sizes), _dtype(meta["dtype"]))

    @property
    def static(self) -> tuple[int | None, ...]:
        return tuple(s if isinstance(s, int) else None for s in self.shape)


def _guard(value: Any, name: str, static: tuple[int | None, ...]) -> None:
    """What torch's ``.module()`` checks before running: the sizes traced as constants."""
    dims = getattr(value, "shape", None)
    if dims is None or len(dims) != len(static):
        raise AssertionError(f"Guard failed: {name}.dim() == {len(static)}")
    for index, (got, want) in enumerate(zip(dims, static, strict=True)):
        if want is not None and got != want:
            raise AssertionError(f"Guard failed: {name}.size()[{index}] == {want}")


class Unsupported(Exception):
    """The program uses something this reader leaves to torch.export.load."""


_FALL_BACK = (
    Unsupported,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    AttributeError,
    RuntimeError,
)


def load_program(source: Path | IO[bytes]) -> torch.nn.Module | None:
    """The archive's program as an eval-mode ``fx.GraphModule``, or None when it needs
    torch's own deserializer (see the module's docstring)."""
    try:
        with zipfile.ZipFile(source) as archive:
            return _Reader(archive).module()
    # Anything unexpected in the JSON, too: torch's loader then reads the archive, and says
    # what is wrong with it if anything is.
    except _FALL_BACK:
        return None


class _Reader:
    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        names = archive.namelist()
        self.root = names[0].split("/", 1)[0] + "/" if names else ""

    def _read(self, name: str) -> bytes:
        try:
            return self.archive.read(self.root + name)
        except KeyError:
            raise Unsupported(f"no member {name}") from None

    def _json(self, name: str) -> Any:
        return json.loads(self._read(name))

    def module(self) -> torch.nn.Module:
        import torch
        import torch.fx

        if self._read("byteorder").strip() != b"little" or sys.byteorder != "little":
            raise Unsupported("byte order")
        program = self._json(f"models/{MODEL}.json")
        if (program.get("schema_version") or {}).get("major") != SCHEMA_MAJOR:
            raise Unsupported("schema version")
        gm = program["graph_module"]
        graph_json, signature = gm["graph"], gm["signature"]
        if graph_json.get("custom_obj_values"):
            raise Unsupported("custom objects")
        in_count, single_output = _calling_convention(gm["module_call_graph"])

        weights = self._payloads(f"data/weights/{MODEL}_weights_config.json", "data/weights/")
        constants_config = f"data/constants/{MODEL}_constants_config.json"
        constants = (
            self._payloads(constants_config, "data/constants/")
            if self.root + constants_config in self.archive.namelist()
            else {}
        )

        root = torch.nn.Module()
        placed: dict[str, str] = {}  # fqn -> "constant" / "non-persistent"
        graph = torch.fx.Graph()
        env: dict[str, Any] = {}
        user_inputs: list[str] = []
        for spec in signature["input_specs"]:
            kind, body = _only(spec)
            if kind == "user_input":
                name = _tensor_name(body["arg"])
                env[name] = graph.placeholder(_safe(name))
                meta = graph_json["tensor_values"].get(name)
                if not isinstance(meta, dict):
                    raise Unsupported(f"input {name} has no tensor meta")
                env[name].meta["val"] = InputSpec.of(meta)
                user_inputs.append(name)
                continue
            name = body["arg"]["name"]
            if kind == "parameter":
                fqn, value = body["parameter_name"], weights.get(body["parameter_name"])
                if not isinstance(value, torch.nn.Parameter):
                    raise Unsupported(f"parameter {fqn} is not stored as one")
                _attach(root, fqn, value, "parameter")
            elif kind == "buffer":
                fqn = body["buffer_name"]
                value = weights.get(fqn, constants.get(fqn))
                if value is None:
                    raise Unsupported(f"buffer {fqn} is not stored")
                _attach(root, fqn, value, "buffer", persistent=bool(body.get("persistent")))
                if not body.get("persistent"):
                    placed[fqn] = "non-persistent"
            elif kind == "tensor_constant":
                fqn = body["tensor_constant_name"]
                if fqn not in constants:
                    raise Unsupported(f"constant {fqn} is not stored")
                _attach(root, fqn, constants[fqn], "constant")
                placed[fqn] = "constant"
            else:
                raise Unsupported(f"input kind {kind}")
            env[name] = graph.get_attr(fqn)
        if len(user_inputs) != in_count:
            raise Unsupported("the call signature does not match the graph's inputs")
        for name in user_inputs:  # torch's input guard: the traced static sizes
            spec = env[name].meta["val"]
            graph.call_function(_guard, (env[name], name, spec.static))

        for node in graph_json["nodes"]:
            self._node(graph, env, node)

        outputs = []
        for spec in signature["output_specs"]:
            kind, body = _only(spec)
            if kind != "user_output":
                raise Unsupported(f"output kind {kind}")  # buffer mutations, tokens...
            outputs.append(env[_tensor_name(body["arg"])])
        if single_output and len(outputs) != 1:
            raise Unsupported("one output in the spec, several in the graph")
        graph.output(outputs[0] if single_output else tuple(outputs))
        graph.lint()
        module = torch.fx.GraphModule(root, graph)
        # fx copies every tensor attribute as a persistent buffer: put constants and
        # non-persistent buffers back as torch's unlifting leaves them (state_dict agrees).
        for fqn, how in placed.items():
            *path, field = fqn.split(".")
            owner = module.get_submodule(".".join(path))
            if how == "constant":
                value = owner._buffers.pop(field)
                setattr(owner, field, value)
            elif how == "non-persistent":
                owner._non_persistent_buffers_set.add(field)
        return module.eval()

    # -- weights and constants ----------------------------------------------------------------
    def _payloads(self, config_name: str, folder: str) -> dict[str, torch.Tensor]:
        import torch

        entries = self._json(config_name)["config"]
        flat: dict[str, torch.Tensor] = {}  # one storage per file: aliasing kept, as torch does
        out: dict[str, torch.Tensor] = {}
        for fqn, meta in entries.items():
            if meta.get("use_pickle") is not False:
                raise Unsupported(f"{fqn} is pickled")
            tensor_meta = meta["tensor_meta"]
            dtype = _dtype(tensor_meta["dtype"])
            if (tensor_meta.get("device") or {}).get("type") != "cpu":
                raise Unsupported(f"{fqn} is stored for another device")
            if tensor_meta.get("layout", 7) != 7:
                raise Unsupported(f"{fqn} is not a strided tensor")
            sizes = [_static(s) for s in tensor_meta["sizes"]]
            strides = [_static(s) for s in tensor_meta["strides"]]
            offset = _static(tensor_meta["storage_offset"])
            path = meta["path_name"]
            if path not in flat:
                raw = bytearray(self._read(folder + path))
                if not raw:  # an empty tensor; a non-empty one stored as nothing is torch's
                    if math.prod(sizes) != 0:
                        raise Unsupported(f"{path} is empty but sized {sizes}")
                    flat[path] = torch.zeros(sizes, dtype=dtype)
                elif len(raw) % dtype.itemsize:
                    raise Unsupported(f"{path} is no whole number of {dtype}")
                else:
                    flat[path] = torch.frombuffer(raw, dtype=dtype)
            try:
                tensor = torch.as_strided(flat[path], sizes, strides, offset)
            except RuntimeError as exc:  # sizes past the stored bytes
                raise Unsupported(f"{fqn}: {exc}") from exc
            if meta.get("is_param"):
                tensor = torch.nn.Parameter(tensor, requires_grad=False)
            out[fqn] = tensor
        return out

    # -- the graph ----------------------------------------------------------------------------
    def _node(self, graph: Any, env: dict[str, Any], node: Mapping[str, Any]) -> None:
        target_name = node["target"]
        target, schema = _resolve(target_name)
        if schema is None:  # Python's operator on sizes: positional arguments
            args: tuple[Any, ...] = tuple(_arg(env, i["arg"]) for i in node["inputs"])
            kwargs: dict[str, Any] = {}
        else:
            args, kwargs = _arguments(schema, env, node["inputs"])
        outputs = node["outputs"]
        name = _output_name(outputs)
        call = graph.create_node("call_function", target, args, kwargs, name=_node_name(name))
        if name is not None:
            env[name] = call
            return
        # Several results (an op returning a tuple or a list): one getitem per result.
        results = outputs
        if len(outputs) == 1 and "as_tensors" in outputs[0]:
            results = [{"as_tensor": t} for t in outputs[0]["as_tensors"]]
        for index, result in enumerate(results):
            kind, body = _only(result)
            if kind == "as_none":
                continue
            if kind == "as_tensor":
                item = graph.call_function(operator.getitem, (call, index))
                env[body["name"]] = item
            elif kind == "as_sym_int" and "as_name" in body:
                item = graph.call_function(operator.getitem, (call, index))
                env[body["as_name"]] = item
            else:
                raise Unsupported(f"{target_name} returns {kind}")


def _only(mapping: Mapping[str, Any]) -> tuple[str, Any]:
    """The one set field of a serialized union ({"as_tensor": {...}})."""
    items = [(k, v) for k, v in mapping.items() if v is not None]
    if len(items) != 1:
        raise Unsupported(f"not a union: {sorted(mapping)}")
    return items[0]


def _tensor_name(argument: Mapping[str, Any]) -> str:
    kind, body = _only(argument)
    if kind != "as_tensor":
        raise Unsupported(f"a {kind} where a tensor was expected")
    return str(body["name"])


def _static(value: Mapping[str, Any]) -> int:
    kind, body = _only(value)
    if kind != "as_int":
        raise Unsupported("a stored tensor with a symbolic size")
    return int(body)


def _dtype(code: int) -> torch.dtype:
    import torch

    name = _DTYPES.get(code)
    if name is None or not hasattr(torch, name):
        raise Unsupported(f"scalar type {code}")
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def _safe(name: str) -> str:
    if not _NAME.match(name):
        raise Unsupported(f"name {name!r}")
    return name


def _node_name(name: str | None) -> str | None:
    """torch's name for the node when it is a Python identifier (fx makes it unique)."""
    return name if name is not None and _NAME.match(name) else None


def _calling_convention(call_graph: list[Mapping[str, Any]]) -> tuple[int, bool]:
    """How many positional tensors the module takes, and whether it returns one tensor (a
    leaf out_spec) or a flat tuple: ``forward(x)``, nothing nested, no keyword inputs."""
    top = next((entry for entry in call_graph if entry.get("fqn") == ""), None)
    if top is None or not top.get("signature"):
        raise Unsupported("no top-level call signature")
    in_spec = _treespec(top["signature"]["in_spec"])
    out_spec = _treespec(top["signature"]["out_spec"])
    if in_spec.get("type") != "builtins.tuple" or len(in_spec["children_spec"]) != 2:
        raise Unsupported("inputs are not (args, kwargs)")
    args_spec, kwargs_spec = in_spec["children_spec"]
    if kwargs_spec.get("type") != "builtins.dict" or kwargs_spec["children_spec"]:
        raise Unsupported("keyword inputs")
    if args_spec.get("type") != "builtins.tuple" or not all(
        _is_leaf(child) for child in args_spec["children_spec"]
    ):
        raise Unsupported("nested inputs")
    if _is_leaf(out_spec):
        return len(args_spec["children_spec"]), True
    if out_spec.get("type") == "builtins.tuple" and all(
        _is_leaf(child) for child in out_spec["children_spec"]
    ):
        return len(args_spec["children_spec"]), False
    raise Unsupported("nested outputs")


def _treespec(text: str) -> dict[str, Any]:
    loaded = json.loads(text)
    if not (isinstance(loaded, list) and len(loaded) == 2 and loaded[0] == 1):
        raise Unsupported("treespec version")
    return dict(loaded[1])


def _is_leaf(spec: Mapping[str, Any]) -> bool:
    return spec.get("type") is None and not spec.get("children_spec")


def _resolve(target: str) -> tuple[Callable[..., Any], Any]:
    """(callable, its schema) for ``torch.ops.aten.OP.OVERLOAD``; (operator.X, None) for
    Python's arithmetic on sizes. Anything else is left to torch."""
    import torch

    if target.startswith("torch.ops.aten."):
        parts = target.split(".")
        if len(parts) != 5 or not all(_NAME.match(p) and "__" not in p for p in parts[3:]):
            raise Unsupported(f"target {target}")
        try:
            overload = getattr(getattr(torch.ops.aten, parts[3]), parts[4])
        except (AttributeError, RuntimeError):
            raise Unsupported(f"unknown operator {target}") from None
        return overload, overload._schema
    module, _, name = target.partition(".")
    if module == "_operator" and name in OPERATORS:  # what registry.pt2 admits
        return getattr(operator, name), None
    raise Unsupported(f"target {target}")


def _arguments(
    schema: Any, env: Mapping[str, Any], inputs: list[Mapping[str, Any]]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments in the schema's order, as torch's deserializer
    places them (each input says POSITIONAL (1) or KEYWORD (2))."""
    given = {i["name"]: (i.get("kind"), _arg(env, i["arg"])) for i in inputs}
    known = {a.name for a in schema.arguments}
    if set(given) - known:
        raise Unsupported(f"arguments {sorted(set(given) - known)} not in {schema.name}")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for argument in schema.arguments:
        if argument.name not in given:
            if not argument.kwarg_only and not _has_default(argument):
                raise Unsupported(f"{schema.name} misses {argument.name}")
            continue
        kind, value = given[argument.name]
        if kind == 1:
            if kwargs:
                raise Unsupported("a positional argument after a keyword one")
            args.append(value)
        elif kind == 2:
            kwargs[argument.name] = value
        else:
            raise Unsupported("an argument of no kind (an old archive)")
    return tuple(args), kwargs


def _has_default(argument: Any) -> bool:
    return bool(argument.has_default_value())


def _arg(env: Mapping[str, Any], argument: Mapping[str, Any]) -> Any:
    import torch

    if not argument:
        return None
    body: Any
    kind, body = _only(argument)
    if kind == "as_none":
        return None
    if kind == "as_tensor":
        return _ref(env, body["name"])
    if kind in ("as_int", "as_bool", "as_string"):
        return body
    if kind == "as_float":
        return _float(body)
    if kind in ("as_ints", "as_bools", "as_strings"):
        return list(body)
    if kind == "as_floats":
        return [_float(v) for v in body]
    if kind == "as_tensors":
        return [_ref(env, t["name"]) for t in body]
    if kind == "as_optional_tensors":
        return [None if "as_none" in t else _ref(env, t["as_tensor"]["name"]) for t in body]
    if kind == "as_optional_tensor":
        sub, value = _only(body)
        return None if sub == "as_none" else _ref(env, value["name"])
    if kind == "as_sym_int":
        return _sym(env, body)
    if kind == "as_sym_ints":
        return [_sym(env, v) for v in body]
    if kind == "as_scalar_type":
        return _dtype(body)
    if kind == "as_layout" and body in _LAYOUTS:
        return getattr(torch, _LAYOUTS[body])
    if kind == "as_memory_format" and body in _MEMORY_FORMATS:
        return getattr(torch, _MEMORY_FORMATS[body])
    if kind == "as_device":
        index = body.get("index")
        if body.get("type") not in ("cpu", "cuda", "mps", "xpu", "meta"):
            raise Unsupported(f"device {body.get('type')!r}")
        return torch.device(body["type"]) if index is None else torch.device(body["type"], index)
    if kind == "as_complex":
        return complex(_float(body["real"]), _float(body["imag"]))
    raise Unsupported(f"argument kind {kind}")


def _ref(env: Mapping[str, Any], name: str) -> Any:
    try:
        return env[name]
    except KeyError:
        raise Unsupported(f"{name} is used before it is made") from None


def _sym(env: Mapping[str, Any], body: Mapping[str, Any]) -> Any:
    kind, value = _only(body)
    if kind == "as_int":
        return int(value)
    if kind == "as_name":
        return _ref(env, value)
    raise Unsupported(f"symbolic int {kind}")


def _float(value: Any) -> float:
    if isinstance(value, str):
        if value not in _SPECIAL_FLOATS:
            raise Unsupported(f"float {value!r}")
        return _SPECIAL_FLOATS[value]
    return float(value)


def _output_name(outputs: list[Mapping[str, Any]]) -> str | None:
    """The single result's name; None when the op returns several (or a list)."""
    if len(outputs) != 1:
        return None
    kind, body = _only(outputs[0])
    if kind == "as_tensor":
        return str(body["name"])
    if kind in ("as_sym_int", "as_sym_float", "as_sym_bool") and "as_name" in body:
        return str(body["as_name"])
    if kind == "as_none":
        raise Unsupported("an op whose one result is None")
    return None


def _attach(
    root: torch.nn.Module, fqn: str, value: torch.Tensor, kind: str, persistent: bool = True
) -> None:
    """``value`` at dotted path ``fqn`` of ``root``, as torch's unlifting places it."""
    import torch

    *path, field = fqn.split(".")
    module = root
    for part in path:
        child = module._modules.get(part)
        if child is None:
            child = torch.nn.Module()
            module.add_module(_safe(part) if not part.isdigit() else part, child)
        module = child
    if not (_NAME.match(field) or field.isdigit()):
        raise Unsupported(f"attribute {fqn!r}")
    if kind == "parameter":
        module.register_parameter(field, value)  # type: ignore[arg-type]
    elif kind == "buffer":
        module.register_buffer(field, value, persistent=persistent)
    else:
        setattr(module, field, value)
