"""Which saved weights belong to which config layer when names cannot say.

Keras' own ``load_weights`` for a legacy ``.h5`` weights file ignores names:
it pairs the model's layers that have weights with the file's layers that
have weights, in order, and checks the counts and shapes.  A config rebuilt
from code gets fresh auto-names (``gru_3``, ``dense_7``) that differ from the
file's, so gru_infer does the same when the names do not match.
"""

from __future__ import annotations

from ..errors import ConversionError

# Layer classes that never own weights (anything else is counted as having
# weights, as Keras counts the layers whose .weights is not empty).
WEIGHTLESS_CLASSES = frozenset((
    "InputLayer", "Masking", "Activation", "ReLU", "Softmax", "LeakyReLU", "ELU",
    "ThresholdedReLU", "NotEqual", "Any", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Flatten",
    "Reshape", "Permute", "RepeatVector", "Lambda", "Concatenate", "Add", "Subtract",
    "Multiply", "Average", "Maximum", "Minimum", "Dot", "GlobalAveragePooling1D",
    "GlobalMaxPooling1D", "MaxPooling1D", "AveragePooling1D", "Cropping1D", "ZeroPadding1D",
    "UpSampling1D", "TFOpLambda", "SlicingOpLambda"))


class WeightMatchError(ConversionError):
    """The config's layers and the file's weights cannot be paired."""


def has_weights(layer: dict) -> bool:
    if layer["class_name"] == "TimeDistributed":
        return has_weights(layer["config"]["layer"])
    return layer["class_name"] not in WEIGHTLESS_CLASSES


def _gru_shapes(config: dict, cudnn: bool) -> list:
    units = int(config["units"])
    shapes = [[(None, 3 * units)], [(units, 3 * units)]]
    if cudnn or config.get("use_bias", True):
        # (2, 3u) reset_after, (3u,) reset-before, (6u,) written by CuDNNGRU
        shapes.append([(2, 3 * units), (3 * units,), (6 * units,)])
    return shapes


def expected_shapes(layer: dict):
    """Per weight, the shapes it may have (None: any size on that axis), in the
    order Keras lists a layer's weights; None when the class is not known."""
    cls, config = layer["class_name"], layer["config"]
    try:
        if cls in ("GRU", "GRUV2", "CuDNNGRU"):
            return _gru_shapes(config, cls == "CuDNNGRU")
        if cls == "Bidirectional":
            forward = expected_shapes(config["layer"])
            backward = expected_shapes(config.get("backward_layer") or config["layer"])
            return None if forward is None or backward is None else forward + backward
        if cls == "TimeDistributed":
            return expected_shapes(config["layer"])
        if cls == "Dense":
            units = int(config["units"])
            return [[(None, units)]] + ([[(units,)]] if config.get("use_bias", True) else [])
        if cls == "Embedding":
            return [[(int(config["input_dim"]), int(config["output_dim"]))]]
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _fits(shape: tuple, patterns: list) -> bool:
    return any(len(shape) == len(p) and all(e is None or e == s for s, e in zip(shape, p))
               for p in patterns)


def _show(shapes) -> str:
    if shapes is None:
        return "?"
    parts = []
    for alternatives in shapes:
        if isinstance(alternatives, tuple):
            parts.append(str(alternatives))
        else:
            parts.append(" or ".join(str(tuple("?" if e is None else e for e in p))
                                     for p in alternatives).replace("'", ""))
    return "[" + ", ".join(parts) + "]"


def _listing(config_layers: list, file_layers: list) -> str:
    ours = "; ".join(f"{layer['name']} ({layer['class_name']}) {_show(expected_shapes(layer))}"
                     for layer in config_layers)
    theirs = "; ".join(f"{name} {_show(shapes)}" for name, shapes in file_layers)
    return f"config layers with weights: {ours or 'none'}. File layers with weights: " \
           f"{theirs or 'none'}"


def match_by_order(config_layers: list, file_layers: list, path) -> dict:
    """{config layer name: file layer name}, pairing layers with weights in order.

    config_layers: the config's layer dicts (all of them); file_layers:
    [(name, [weight shape, ...])] of the file's layers with weights, in file
    order.  Counts and every shape must agree."""
    weighted = [layer for layer in config_layers if has_weights(layer)]
    if len(weighted) != len(file_layers):
        raise WeightMatchError(
            f"{path}: the config's layer names do not match the file's, and matching in order "
            f"(as Keras' load_weights does) fails: the config has {len(weighted)} layers with "
            f"weights, the file {len(file_layers)}. {_listing(weighted, file_layers)}")
    for layer, (name, shapes) in zip(weighted, file_layers):
        expected = expected_shapes(layer)
        if expected is None:
            continue
        shapes = [tuple(s) for s in shapes]  # in file order, which moves when part is frozen
        if len(expected) != len(shapes) or not (
                all(any(_fits(s, e) for e in expected) for s in shapes)
                and all(any(_fits(s, e) for s in shapes) for e in expected)):
            raise WeightMatchError(
                f"{path}: the config's layer names do not match the file's, and matching in "
                f"order (as Keras' load_weights does) fails at config layer {layer['name']!r} "
                f"({layer['class_name']}) <-> file layer {name!r}: weight shapes "
                f"{_show(shapes)} do not fit {_show(expected)}. "
                f"{_listing(weighted, file_layers)}")
    return {layer["name"]: name for layer, (name, _) in zip(weighted, file_layers)}
