"""The Keras network's upper part (what fine-tuning trains on cached activations) fits the full network."""

from __future__ import annotations

import pytest

# Keras calls np.array(tensor) the numpy-1 way; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras.*")


@pytest.mark.parametrize("input_size", [224, 260])
@pytest.mark.parametrize("block", [5, 11])
def test_the_upper_part_takes_the_full_networks_activations_at_any_input_size(input_size: int, block: int) -> None:
    """At 260 px "same" padding rounds 65 up to 33 before block 5: the stem's halving must come first."""
    from carspot.classifier import keras_model

    full = keras_model.build_efficientnet_lite0(include_top=False, input_size=input_size)
    upper = keras_model.build_efficientnet_lite0(include_top=False, first_block=block, input_size=input_size)
    assert tuple(upper.input.shape) == tuple(full.get_layer(f"block{block}_expand_conv").input.shape)
