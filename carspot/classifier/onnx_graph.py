"""Cut an ONNX file down to the nodes some of its outputs need, reading only the names in its protobuf bytes.

Why not ``onnx.utils.Extractor``: importing the ``onnx`` package imports ``ml_dtypes``, whose extension takes
0.56 s to initialise on this CPU (2026-12-07); it tripled a worker's model load (0.3 -> 1.0 s) and added ~70 MB
of peak memory, to compute a list of nodes. Nor protobuf's generated classes: with a schema of our own it took
35-48 ms of a fresh process (its import and three copies of the 8 MB file) for what this takes in a few.

The cut needs only the graph's names: each node's inputs and outputs, each initializer's, input's, output's and
value info's name. This module walks the file's protobuf wire format (tag, then a varint, 8 or 4 bytes, or a
length and that many bytes), decodes only those strings, and writes every entry it keeps back as the very bytes it
read: weights, attributes, types and opsets are never decoded. Field numbers are onnx.proto's. A test checks
each cut against ``onnx.utils.Extractor``'s on the released file and runs both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["GraphCut", "OnnxGraph"]

_MODEL_GRAPH = 7  # ModelProto.graph
_GRAPH_LISTS = {1: "node", 5: "initializer", 11: "input", 12: "output", 13: "value_info"}  # GraphProto
_NAME_FIELD = {"initializer": 8, "input": 1, "output": 1, "value_info": 1}  # TensorProto.name, ValueInfoProto.name
_NODE_INPUT, _NODE_OUTPUT, _NODE_ATTRIBUTE = 1, 2, 5  # NodeProto
_ATTRIBUTE_GRAPHS = (6, 11)  # AttributeProto.g, .graphs: a control-flow subgraph, which may read outer values
_LENGTH_DELIMITED = 2


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("not an ONNX model: a varint runs past its message")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: memoryview) -> Iterator[tuple[int, memoryview, memoryview]]:
    """Each field of one message: (number, the field's bytes from its tag on, its payload if length-delimited)."""
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        payload_start = pos
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == _LENGTH_DELIMITED:
            length, payload_start = _varint(data, pos)
            pos = payload_start + length
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"not an ONNX model: wire type {wire} of field {number}")
        if number == 0 or pos > len(data):
            raise ValueError("not an ONNX model: a field runs past its message")
        yield number, data[start:pos], data[payload_start:pos] if wire == _LENGTH_DELIMITED else data[pos:pos]


def _text(payload: memoryview) -> str:
    try:
        return str(payload, "utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not an ONNX model: a name is not UTF-8 ({exc})") from exc


def _name(entry: memoryview, field: int) -> str:
    return next((_text(payload) for number, _, payload in _fields(entry) if number == field), "")


def _key(number: int, length: int) -> bytes:
    """A length-delimited field's tag and length."""
    out = bytearray()
    for value in ((number << 3) | _LENGTH_DELIMITED, length):
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


@dataclass(frozen=True)
class GraphCut:
    """A smaller file that computes some of the original's outputs, and the original nodes it runs."""

    model: bytes
    nodes: frozenset[int]
    """Indices in the original graph's node list."""


@dataclass(frozen=True)
class _Entry:
    name: str
    raw: memoryview
    """The entry's field in the graph, tag included, as read."""


class OnnxGraph:
    """An ONNX file's graph, read once for its names; its weights and attributes stay undecoded bytes."""

    def __init__(self, model: bytes) -> None:
        data = memoryview(model)
        self._model_rest: list[memoryview] = []
        graphs: list[memoryview] = []
        for number, raw, payload in _fields(data):
            if number == _MODEL_GRAPH:
                graphs.append(payload)
            else:
                self._model_rest.append(raw)
        if len(graphs) != 1:
            raise ValueError("not an ONNX model: no graph")
        self._graph_rest: list[memoryview] = []
        lists: dict[str, list[tuple[memoryview, memoryview]]] = {name: [] for name in _GRAPH_LISTS.values()}
        for number, raw, payload in _fields(graphs[0]):
            if number in _GRAPH_LISTS:
                lists[_GRAPH_LISTS[number]].append((raw, payload))
            else:
                self._graph_rest.append(raw)
        if not lists["node"]:
            raise ValueError("not an ONNX model: no nodes")
        self._nodes = [raw for raw, _ in lists["node"]]
        self._node_inputs: list[list[str]] = []
        self._producer: dict[str, int] = {}
        self.has_subgraphs = False
        """A node runs a subgraph (If, Loop, Scan), which may read values the cut does not see: do not cut."""
        for index, (_, node) in enumerate(lists["node"]):
            inputs: list[str] = []
            for number, _, payload in _fields(node):
                if number == _NODE_INPUT:
                    inputs.append(_text(payload))
                elif number == _NODE_OUTPUT:
                    self._producer[_text(payload)] = index
                elif number == _NODE_ATTRIBUTE:
                    self.has_subgraphs |= any(n in _ATTRIBUTE_GRAPHS for n, _, _ in _fields(payload))
            self._node_inputs.append(inputs)
        self._named = {
            name: [_Entry(_name(payload, field), raw) for raw, payload in lists[name]]
            for name, field in _NAME_FIELD.items()
        }
        self.outputs: list[str] = [entry.name for entry in self._named["output"]]
        """The graph's output names, in order."""

    def cut(self, outputs: Iterable[str]) -> GraphCut:
        """The file with only the nodes, initializers, inputs and value infos that ``outputs`` depend on, and only
        those outputs (what ``onnx.utils.Extractor(model).extract_model(inputs, outputs)`` gives when the inputs
        are the graph's own)."""
        wanted = list(dict.fromkeys(outputs))
        missing = set(wanted) - set(self.outputs)
        if missing:
            raise ValueError(f"the file has no output {sorted(missing)}")
        needed_nodes: set[int] = set()
        needed_values: set[str] = set()
        pending = list(wanted)
        while pending:
            name = pending.pop()
            if not name or name in needed_values:  # "" is an omitted optional input
                continue
            needed_values.add(name)
            index = self._producer.get(name)
            if index is not None and index not in needed_nodes:
                needed_nodes.add(index)
                pending.extend(self._node_inputs[index])
        by_output = {entry.name: entry.raw for entry in self._named["output"]}
        graph = [
            *self._graph_rest,
            *(raw for index, raw in enumerate(self._nodes) if index in needed_nodes),
            *(
                entry.raw
                for name in ("initializer", "input", "value_info")
                for entry in self._named[name]
                if entry.name in needed_values
            ),
            *(by_output[name] for name in wanted),
        ]
        length = sum(len(part) for part in graph)
        model = b"".join([*self._model_rest, _key(_MODEL_GRAPH, length), *graph])
        return GraphCut(model=model, nodes=frozenset(needed_nodes))
