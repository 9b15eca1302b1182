import numpy as np
import pytest

from gru_infer.runtime.layer import GRU_DIRECTIONS


def random_gru_weights(rng, input_size, hidden_size, direction="forward", bias=True, dtype=np.float32,
                       scale=0.5):
    """Canonical weights with every entry random, biases included, so a wrong
    index anywhere shows up in the output."""
    D = len(GRU_DIRECTIONS[direction])
    W = (rng.standard_normal((D, 3 * hidden_size, input_size)) * scale / np.sqrt(input_size) * 2)
    R = (rng.standard_normal((D, 3 * hidden_size, hidden_size)) * scale / np.sqrt(hidden_size) * 2)
    B = rng.standard_normal((D, 6 * hidden_size)) * scale if bias else None
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    return cast(W), cast(R), cast(B)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def run_converted(model, feeds: dict) -> list:
    """Call a model converted from a graph the way its spec.source says: inputs
    that held initial states or lengths become call arguments, and GRU state
    outputs come from return_state.  feeds: arrays by the graph's input names."""
    source = model.spec.source
    feeds = dict(feeds)
    options = {}
    if "initial_states_input" in source:
        options["initial_states"] = feeds.pop(source["initial_states_input"])
    if "lengths_input" in source:
        options["lengths"] = feeds.pop(source["lengths_input"])
    args = [feeds[i.name] for i in model.spec.inputs]
    if source.get("state_outputs"):
        outputs, states = model(*args, return_state=True, **options)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        return outputs + [np.concatenate(states)]
    outputs = model(*args, **options)
    return outputs if isinstance(outputs, list) else [outputs]
