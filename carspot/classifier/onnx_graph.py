"""Cut an ONNX file down to the nodes some of its outputs need, with protobuf alone.

Why not ``onnx.utils.Extractor``: importing the ``onnx`` package imports ``ml_dtypes``, whose extension takes
0.56 s to initialise on this CPU (2026-12-07), which tripled a worker's model load (0.3 -> 1.0 s) and added
~70 MB of peak memory, to compute a list of nodes. The cut only needs the graph's names: each node's inputs and
outputs, each initializer's, input's and output's name. This module reads those through a message schema of its
own that declares just those fields, with their numbers in ``onnx.proto``; protobuf keeps every field it does
not declare (weights, attributes, types, opsets) as unknown fields and writes them back byte for byte. A test
checks the cut against ``onnx.utils.Extractor``'s on the released file.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["GraphCut", "cut_graph", "output_names"]

_PACKAGE = "carspot.onnx_names"


@functools.cache
def _model_class() -> Any:
    """``ModelProto`` with only ``graph`` declared, ``GraphProto`` with only its name lists (onnx.proto's numbers)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="carspot/onnx_names.proto", package=_PACKAGE, syntax="proto2")

    def message(name: str, *fields: tuple[str, int, bool, str | None]) -> None:
        declared = proto.message_type.add(name=name)
        for field_name, number, repeated, message_type in fields:
            entry = declared.field.add(name=field_name, number=number)
            entry.label = field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL
            if message_type is None:
                entry.type = field.TYPE_STRING
            else:
                entry.type, entry.type_name = field.TYPE_MESSAGE, f".{_PACKAGE}.{message_type}"

    message("ValueInfo", ("name", 1, False, None))  # ValueInfoProto.name = 1
    message("Tensor", ("name", 8, False, None))  # TensorProto.name = 8
    message("Node", ("input", 1, True, None), ("output", 2, True, None), ("name", 3, False, None))
    message(
        "Graph",  # GraphProto: node = 1, initializer = 5, input = 11, output = 12, value_info = 13
        ("node", 1, True, "Node"),
        ("initializer", 5, True, "Tensor"),
        ("input", 11, True, "ValueInfo"),
        ("output", 12, True, "ValueInfo"),
        ("value_info", 13, True, "ValueInfo"),
    )
    message("Model", ("graph", 7, False, "Graph"))  # ModelProto.graph = 7
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Model"))


def _parse(model: bytes) -> Any:
    from google.protobuf.message import DecodeError

    try:
        parsed = _model_class().FromString(model)
    except DecodeError as exc:
        raise ValueError(f"not an ONNX model: {exc}") from exc
    if not parsed.HasField("graph") or not parsed.graph.node:
        raise ValueError("not an ONNX model: no graph")
    return parsed


def output_names(model: bytes) -> list[str]:
    """The names of the file's graph outputs, in order."""
    return [output.name for output in _parse(model).graph.output]


@dataclass(frozen=True)
class GraphCut:
    """A smaller file that computes some of the original's outputs, and the original nodes it runs."""

    model: bytes
    nodes: frozenset[int]
    """Indices in the original graph's node list."""


def cut_graph(model: bytes, outputs: Iterable[str]) -> GraphCut:
    """``model`` with only the nodes, initializers, inputs and value infos that ``outputs`` depend on, and only
    those outputs (what ``onnx.utils.Extractor(model).extract_model(inputs, outputs)`` gives when the inputs are
    the graph's own)."""
    parsed = _parse(model)
    graph = parsed.graph
    wanted = list(outputs)
    missing = set(wanted) - {output.name for output in graph.output}
    if missing:
        raise ValueError(f"the file has no output {sorted(missing)}")
    producer = {name: index for index, node in enumerate(graph.node) for name in node.output}
    needed_nodes: set[int] = set()
    needed_values: set[str] = set()
    pending = list(wanted)
    while pending:
        name = pending.pop()
        if not name or name in needed_values:  # "" is an omitted optional input
            continue
        needed_values.add(name)
        index = producer.get(name)
        if index is not None and index not in needed_nodes:
            needed_nodes.add(index)
            pending.extend(graph.node[index].input)

    def keep(entries: Any, chosen: list[Any]) -> None:
        copies = [type(entry)() for entry in chosen]  # copied first: clearing the list releases the originals
        for copy, entry in zip(copies, chosen, strict=True):
            copy.CopyFrom(entry)
        del entries[:]
        entries.extend(copies)

    by_name = {output.name: output for output in graph.output}
    keep(graph.node, [node for index, node in enumerate(graph.node) if index in needed_nodes])
    keep(graph.initializer, [tensor for tensor in graph.initializer if tensor.name in needed_values])
    keep(graph.input, [value for value in graph.input if value.name in needed_values])
    keep(graph.value_info, [value for value in graph.value_info if value.name in needed_values])
    keep(graph.output, [by_name[name] for name in dict.fromkeys(wanted)])
    return GraphCut(model=parsed.SerializeToString(), nodes=frozenset(needed_nodes))
