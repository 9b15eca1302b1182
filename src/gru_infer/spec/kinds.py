"""Every layer kind a ModelSpec may hold, by the name the weight file stores."""

from .extra_layers import EXTRA_LAYERS
from .layers import CORE_LAYERS

LAYER_KINDS = {cls.kind: cls for cls in CORE_LAYERS + EXTRA_LAYERS}
