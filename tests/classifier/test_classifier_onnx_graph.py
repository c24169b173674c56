"""`OnnxGraph.cut`: the nodes some outputs need, cut from an ONNX file's bytes as onnx's Extractor cuts them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.utils import Extractor

from carspot.classifier.onnx_graph import OnnxGraph
from carspot.classifier.registry import current_version
from tests.classifier.released import MODELS

PARTS = (["probabilities"], ["pooled", "feature_map"])


@pytest.fixture(scope="module")
def released_file() -> bytes:
    version = current_version(MODELS)
    assert version is not None
    return (MODELS / "versions" / version / "classifier.onnx").read_bytes()


def run(model: bytes, outputs: list[str], pixels: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(outputs, {"pixels": pixels})


@pytest.mark.parametrize("outputs", PARTS)
def test_a_cut_keeps_what_onnxs_extractor_keeps(released_file: bytes, outputs: list[str]) -> None:
    ours = onnx.load_from_string(OnnxGraph(released_file).cut(outputs).model)
    theirs = Extractor(onnx.load_from_string(released_file)).extract_model(["pixels"], outputs)
    assert [node.name for node in ours.graph.node] == [node.name for node in theirs.graph.node]
    assert sorted(t.name for t in ours.graph.initializer) == sorted(t.name for t in theirs.graph.initializer)
    assert [v.name for v in ours.graph.input] == [v.name for v in theirs.graph.input] == ["pixels"]
    assert [v.name for v in ours.graph.output] == outputs
    onnx.checker.check_model(ours)


def test_a_cut_computes_what_the_whole_file_computes(released_file: bytes) -> None:
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 256, 256, 3)).astype(np.float32)
    graph = OnnxGraph(released_file)
    whole = dict(zip(graph.outputs, run(released_file, graph.outputs, pixels), strict=True))
    for outputs in PARTS:
        for name, value in zip(outputs, run(graph.cut(outputs).model, outputs, pixels), strict=True):
            np.testing.assert_array_equal(value, whole[name])


def test_fields_it_does_not_read_are_written_back_unchanged(released_file: bytes) -> None:
    """The opset, the producer, the weights' bytes and the node attributes survive the cut."""
    original = onnx.load_from_string(released_file)
    cut = onnx.load_from_string(OnnxGraph(released_file).cut(["probabilities"]).model)
    assert cut.opset_import == original.opset_import and cut.producer_name == original.producer_name
    kept = {node.name: node for node in cut.graph.node}
    assert kept and all(node == kept[node.name] for node in original.graph.node if node.name in kept)
    weights = {t.name: t for t in original.graph.initializer}
    assert all(tensor == weights[tensor.name] for tensor in cut.graph.initializer)


def test_the_two_parts_of_the_released_file_share_only_the_inputs_quantization(released_file: bytes) -> None:
    brand, car = (OnnxGraph(released_file).cut(outputs) for outputs in PARTS)
    assert len(brand.nodes & car.nodes) < 0.1 * min(len(brand.nodes), len(car.nodes))
    assert len(brand.nodes | car.nodes) == len(onnx.load_from_string(released_file).graph.node)


def test_what_is_not_an_onnx_file_or_output_is_a_value_error(released_file: bytes) -> None:
    with pytest.raises(ValueError, match="not an ONNX model"):
        OnnxGraph(b"\x00\xff not protobuf at all \xff")
    with pytest.raises(ValueError, match="not an ONNX model"):
        OnnxGraph(b"")
    with pytest.raises(ValueError, match="no output"):
        OnnxGraph(released_file).cut(["logits"])


def test_a_file_cut_short_is_a_value_error_not_a_crash(released_file: bytes) -> None:
    for end in (len(released_file) // 2, len(released_file) - 1, 3):
        with pytest.raises(ValueError, match="not an ONNX model"):
            OnnxGraph(released_file[:end])


def test_a_graph_whose_nodes_run_subgraphs_is_not_cut() -> None:
    """An If's branches may read values of the outer graph that the cut does not follow: one session instead."""
    from onnx import TensorProto, helper

    branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "branch", [], [helper.make_tensor_value_info("y", 1, [1])]
    )
    nodes = [
        helper.make_node("ReduceMax", ["pixels"], ["peak"], keepdims=0),
        helper.make_node("Cast", ["peak"], ["flag"], to=TensorProto.BOOL),
        helper.make_node("If", ["flag"], ["chosen"], then_branch=branch, else_branch=branch),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("pixels", 1, [1])], [helper.make_tensor_value_info("chosen", 1, [1])]
    )
    with_if = OnnxGraph(helper.make_model(graph).SerializeToString())
    assert with_if.has_subgraphs and with_if.outputs == ["chosen"]
    assert not OnnxGraph(
        helper.make_model(helper.make_graph(nodes[:2], "g", graph.input, [])).SerializeToString()
    ).has_subgraphs


def test_serving_the_onnx_file_never_imports_the_onnx_package() -> None:
    """Its import (ml_dtypes') took 0.6 s, four times what loading the model takes."""
    code = textwrap.dedent(f"""
        import sys
        from carspot.classifier.serving import load_classifier
        classifier = load_classifier({str(MODELS)!r}, runtime="onnxruntime", threads=1)
        assert classifier._runtime.separable
        print(sorted(name for name in ("onnx", "ml_dtypes", "tensorflow") if name in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
