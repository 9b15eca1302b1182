"""Model: a ModelSpec and the programs that run it; Stream: the same model
run one step at a time with its states kept.

A call checks its arguments once, here, then runs the program compiled for
its shape (made on first use, cached per thread).  Nothing in this module
needs the compiled core until a model runs, so models convert, save and
pickle where the extension cannot load.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import _threads
from .._threads import resolve_num_threads
from ..errors import CoreUnavailableError, InputError, InputTypeError
from ..spec import file as spec_file
from ..spec.graph import INPUT, Input, ModelSpec, Node, sequential
from ..spec.layers import Recurrent

if TYPE_CHECKING:
    import os

    from numpy.typing import ArrayLike

    from ..spec.layers import Layer

PROGRAMS_PER_THREAD = 8  # call shapes kept compiled per thread (least recently used go)


def _runtime():
    """The compiled parts, or CoreUnavailableError saying why they cannot load."""
    try:
        from . import program
    except ImportError as error:
        raise CoreUnavailableError(
            f"the compiled core of gru_infer cannot be loaded here ({error}); models can be "
            "converted, saved and inspected, not run: reinstall gru_infer for this "
            "platform") from error
    return program


class Model:
    """A GRU model: a ModelSpec (plain data) plus what runs it.

    Model(spec), or as before Model(nodes, outputs, input_shape=..., input_dtype=...,
    source=..., input_name=..., time_major=...) for a one-input graph.
    """

    def __init__(self, spec: Union[ModelSpec, Sequence], outputs=None, *, input_shape=(None, None),
                 input_dtype="float32", source=None, input_name=INPUT, time_major=False):
        if not isinstance(spec, ModelSpec):
            nodes = [n if isinstance(n, Node) else Node(*n) for n in spec]
            spec = ModelSpec((Input(input_name, input_shape, input_dtype),), tuple(nodes),
                             tuple(outputs), time_major=time_major, source=source or {})
        self.spec = spec
        self._weights = None
        self._local = threading.local()
        self._lock = threading.Lock()

    @classmethod
    def sequential(cls, layers, *, input_shape=(None, None), input_dtype="float32",
                   input_name=INPUT, **kwargs) -> "Model":
        """A chain: each layer reads the previous one's output."""
        return cls(sequential(layers, input=Input(input_name, input_shape, input_dtype), **kwargs))

    # -- pickling: the description, weights once, nothing compiled ------------------

    def __reduce__(self):
        return (Model, (self.spec,))

    # -- inspection ---------------------------------------------------------------------

    @property
    def layers(self) -> List["Layer"]:
        """The layer specs (plain data: weights and configuration), in graph order."""
        return self.spec.layers

    @property
    def nodes(self) -> tuple:
        """The graph: one Node per layer, naming the values it reads."""
        return self.spec.nodes

    @property
    def outputs(self) -> tuple:
        """The model's outputs as (layer name, output index) pairs, in call-result order."""
        return self.spec.outputs

    @property
    def recurrent_layers(self) -> List["Layer"]:
        """The GRU layers, in the order of initial_states and returned states."""
        return self.spec.recurrent_layers

    def layer(self, name: str) -> "Layer":
        """The layer spec called name (KeyError listing the names if none is)."""
        return self.spec.layer(name)

    @property
    def inputs(self) -> tuple:
        """The model's inputs: Input(name, per-row shape, dtype) each."""
        return self.spec.inputs

    @property
    def input_shape(self) -> tuple:
        """The first input's per-row shape: (time, features), None where any size goes."""
        return self.spec.inputs[0].shape

    @property
    def input_dtype(self) -> np.dtype:
        """The first input's dtype: float features, or integer token ids."""
        return np.dtype(self.spec.inputs[0].dtype)

    @property
    def input_name(self) -> str:
        """The first input's name (the key for inputs given by name)."""
        return self.spec.inputs[0].name

    @property
    def time_major(self) -> bool:
        """True when inputs and outputs are (time, batch, ...) (PyTorch batch_first=False)."""
        return self.spec.time_major

    @property
    def source(self) -> dict:
        """Where the model came from: framework, version, format, file, forward."""
        return self.spec.source

    @property
    def dtype(self) -> np.dtype:
        """The compute dtype: float64 when any layer's weights are float64, else float32."""
        return self.spec.dtype

    @property
    def parameter_count(self) -> int:
        """The number of weights in all layers."""
        return self.spec.parameter_count

    @property
    def precision(self) -> str:
        """How GRU and Dense weights are stored: "native", "bfloat16" or "int8"."""
        return self.spec.precision

    def with_precision(self, precision: str) -> "Model":
        """This model with its GRU and Dense weights stored in precision:
        "bfloat16" (rounded to nearest even) or "int8" (one scale per output
        row), or "native"; states, gates, biases and sums stay float32.  A new
        Model (same spec, precision set); this one is unchanged.  Float32
        models only.  The error this costs is stated in docs/architecture.md."""
        from ..spec.precision import check_reducible

        check_reducible(self.spec, precision)
        return Model(dataclasses.replace(self.spec, precision=precision))

    def summary(self) -> str:
        """An aligned table of the layers (kind, inputs, output shape, parameters),
        then the model's inputs, outputs and source (what `gru-infer info` shows)."""
        from ..spec.summary import summary

        return summary(self.spec)

    def __repr__(self) -> str:
        inputs = ", ".join(f"{i.name} {_shape_text(i.shape, self.time_major)} {i.dtype}"
                           for i in self.spec.inputs)
        return f"<gru_infer.Model {len(self.spec.nodes)} layers, input {inputs}>"

    # -- running ------------------------------------------------------------------------

    def _weights_for_run(self):
        if self._weights is None:
            program = _runtime()
            with self._lock:
                if self._weights is None:
                    self._weights = program.Weights(self.spec)
        return self._weights

    def _program(self, shapes: dict, num_threads: int, states=None):
        """The program for these input shapes, compiled on first use (per thread)."""
        cache = getattr(self._local, "programs", None)
        if cache is None:
            cache = self._local.programs = OrderedDict()
        key = (tuple(shapes.items()), num_threads, _runtime()._core.ISA_EPOCH)
        found = cache.get(key)
        if found is not None:
            cache.move_to_end(key)
            return found
        found = compile_program(self, shapes, num_threads, states)
        cache[key] = found
        if len(cache) > PROGRAMS_PER_THREAD:
            cache.popitem(last=False)
        return found

    def check_inputs(self, xs) -> dict:
        """The call's inputs by name, batch-first, checked against the model's
        inputs (InputError / InputTypeError saying what was expected)."""
        spec_inputs = self.spec.inputs
        if len(xs) == 1 and isinstance(xs[0], dict):
            given = dict(xs[0])
            unknown = set(given) - {i.name for i in spec_inputs}
            missing = [i.name for i in spec_inputs if i.name not in given]
            if unknown or missing:
                raise InputError(f"inputs by name must be exactly {[i.name for i in spec_inputs]}"
                                 f", got {sorted(given)}")
            values = [given[i.name] for i in spec_inputs]
        else:
            values = list(xs)
            if len(values) == 1 and len(spec_inputs) > 1 and isinstance(values[0], (list, tuple)):
                values = list(values[0])
            if len(values) != len(spec_inputs):
                raise InputError(f"this model takes {len(spec_inputs)} input(s) "
                                 f"({', '.join(i.name for i in spec_inputs)}), got {len(values)}")
        out = {}
        for spec_input, value in zip(spec_inputs, values):
            out[spec_input.name] = check_input(spec_input, value, self.time_major,
                                               len(spec_inputs) > 1)
        batches = {x.shape[0] for x in out.values()}
        if len(batches) > 1:
            raise InputError(f"the inputs have different batch sizes: "
                             f"{ {k: v.shape for k, v in out.items()} }")
        return out

    def __call__(self, *xs: Union["ArrayLike", Dict[str, "ArrayLike"]], initial_states: Any = None,
                 lengths: Optional["ArrayLike"] = None, return_state: bool = False,
                 num_threads: Optional[int] = None
                 ) -> Union[np.ndarray, List[np.ndarray], Tuple[Any, List[np.ndarray]]]:
        """Outputs for whole sequences.

        xs: one array per model input ((batch, time, features) floats, or
        (batch, time) token ids; (time, batch, ...) for a time-major model), or
        one dict by input name.  Returns one array, or a list for models with
        several outputs.  lengths: PyTorch packed-sequence lengths, one per row
        (outputs past a row's length are 0).  initial_states: one (directions,
        batch, units) array per GRU layer (a list, or a dict by layer name), or
        PyTorch's stacked h0 (layers * directions, batch, units).
        return_state=True also returns the final states, one (directions,
        batch, units) array per GRU layer, in layer order.
        """
        # (num_threads: None or an int, whose checks the cached key then stands for)
        plain = (len(xs) == 1 and initial_states is None and lengths is None and not return_state
                 and (num_threads is None or type(num_threads) is int))
        if plain:  # the same kind of call as the last one on this thread: checks done
            fast = getattr(self._local, "fast", None)
            if fast is not None and fast[0] == (num_threads, _threads._default_threads,
                                                fast[2].ISA_EPOCH):
                result = fast[1].call_exact(xs[0])
                if result is not None:
                    return result
        else:  # this call sets per-call flags on a program the fast path may share
            self._local.fast = None
        inputs = self.check_inputs(xs)
        threads = resolve_num_threads(num_threads)
        shapes = {name: x.shape for name, x in inputs.items()}
        compiled = self._program(shapes, threads)
        if plain and len(inputs) == 1 and not self.time_major:
            core = _runtime()._core
            self._local.fast = ((num_threads, _threads._default_threads, core.ISA_EPOCH),
                                compiled.program, core)
        batch, steps = next(iter(shapes.values()))[:2]
        use_h0 = self._fill_initial_states(compiled, initial_states, batch)
        for name, x in inputs.items():
            fill(compiled.inputs[name], x, name)
        if lengths is not None:
            compiled.lengths[...] = check_lengths(lengths, batch, steps)
        compiled.program.set_flags(lengths is not None, use_h0)
        compiled.program.run()
        outputs = [self._from_batch_first(np.array(o)) for o in compiled.outputs]
        result = outputs[0] if len(outputs) == 1 else outputs
        if return_state:
            return result, self._final_states(compiled)
        return result

    predict = __call__

    def predict_ragged(self, seqs, *, batch_size: int = 64, strategy: str = "auto",
                       padded: bool = False, num_threads: Optional[int] = None):
        """Outputs for sequences of different lengths, each as if run alone.

        seqs: a list (or 1-D object array) of (time_i, features) arrays, or
        (time_i,) token ids; read-only and strided arrays are fine.  Returns
        one array per sequence, in the given order: (time_i, ...) for a
        sequence output, (...) for a last-step output or a state; a list of
        such lists for a model with several outputs.  padded=True returns
        (outputs, lengths) instead, each output one zero-padded array
        (sequences, max time, ...).  strategy: "lengths" pads each batch and
        passes lengths=, "bucket" batches only equal lengths, "auto" takes
        "lengths" where it is exact for this model (see runtime/ragged.py).
        """
        from .ragged import predict_ragged

        return predict_ragged(self, seqs, batch_size=batch_size, strategy=strategy,
                              padded=padded, num_threads=num_threads)

    def _from_batch_first(self, output: np.ndarray) -> np.ndarray:
        if self.time_major and output.ndim >= 3:
            return np.ascontiguousarray(output.swapaxes(0, 1))
        return output

    def _final_states(self, compiled) -> list:
        states = []
        for layer in self.recurrent_layers:
            parts = [np.array(s) for s in compiled.final_states[layer.name]]
            if len(parts) == 1:
                states.append(parts[0])
            elif len({p.shape for p in parts}) == 1:
                states.append(np.concatenate(parts))
            else:
                states.append(parts)
        return states

    def _fill_initial_states(self, compiled, initial_states, batch) -> list:
        """Copy the caller's initial states into the program's h0 buffers; the
        per-GRU-op flags saying which to read."""
        by_name = self._states_by_name(initial_states)
        use = []
        for name, engine in compiled.gru_owners:
            state = by_name.get(name)
            if state is None:
                use.append(False)
                continue
            layer = self.spec.layer(name)
            buffers = compiled.initial_state_buffers[name]
            parts = state if isinstance(state, list) else (
                [state] if len(buffers) == 1 else [state[i:i + 1] for i in range(len(buffers))])
            target = buffers[engine]
            value = np.asarray(parts[engine]) if engine < len(parts) else None
            if value is None or value.shape != target.shape or value.dtype.kind != "f":
                expected = (len(layer.cells), batch, layer.hidden_sizes[0])
                raise InputError(f"initial state of GRU {name!r} must be a float array of shape "
                                 f"{expected} (directions, batch, units), got "
                                 f"{getattr(value, 'dtype', None)} {np.shape(state)}")
            np.copyto(target, value)
            use.append(True)
        return use

    def _states_by_name(self, states) -> dict:
        if states is None:
            return {}
        recurrent = self.recurrent_layers
        if isinstance(states, np.ndarray) or (hasattr(states, "shape") and len(states.shape) == 3):
            state = np.asarray(states)
            total = sum(len(r.cells) for r in recurrent)
            if state.ndim != 3 or state.shape[0] != total:
                raise InputError(f"a stacked initial state must have shape (layers * directions "
                                 f"= {total}, batch, units), got {state.shape}")
            starts = np.cumsum([0] + [len(r.cells) for r in recurrent])
            return {r.name: state[starts[i]:starts[i + 1]] for i, r in enumerate(recurrent)}
        if isinstance(states, dict):
            unknown = set(states) - {r.name for r in recurrent}
            if unknown:
                raise InputError(f"initial_states names unknown GRU layers {sorted(unknown)}")
            return dict(states)
        states = list(states)
        if len(states) != len(recurrent):
            raise InputError(f"initial_states must hold one state per GRU layer "
                             f"({len(recurrent)}), got {len(states)}")
        return {r.name: s for r, s in zip(recurrent, states)}

    def stream(self, batch_size: int = 1, *, num_threads: Optional[int] = None) -> "Stream":
        """A stateful stream: feed steps (or chunks), state carried between calls."""
        return Stream(self, batch_size, num_threads=num_threads)

    # -- files --------------------------------------------------------------------------

    def save(self, path: Union[str, "os.PathLike[str]"]) -> None:
        """Write the model to one safetensors file (weights + description), atomically."""
        spec_file.save(self.spec, path)


def _shape_text(shape, time_major) -> str:
    rest = ", ".join("?" if s is None else str(s) for s in shape[1:])
    order = "time, batch" if time_major else "batch, time"
    return f"({order}{', ' + rest if rest else ''})"


def compile_program(model: Model, shapes: dict, num_threads: int, states=None):
    program = _runtime()
    row_shapes = {name: shape[1:] for name, shape in shapes.items()}
    try:
        model.spec.shapes(row_shapes)
    except ValueError as error:
        raise InputError(f"the inputs do not fit the model: {error}") from None
    return program.CompiledProgram(model.spec, model._weights_for_run(), shapes, num_threads,
                                   states)


# -- input checks: once per call, at the model boundary ------------------------------------


def check_input(spec_input: Input, value, time_major: bool, named: bool) -> np.ndarray:
    """value as a batch-first array fit for spec_input (not copied)."""
    where = f"input {spec_input.name!r}" if named else "the model input"
    x = value if isinstance(value, np.ndarray) else np.asarray(value)
    if spec_input.token_ids:
        if x.dtype.kind not in "iu":
            if x.dtype.kind != "f":
                raise InputTypeError(f"{where} takes integer token ids (batch, time), "
                                     f"got dtype {x.dtype}")
            if not (np.all(np.isfinite(x)) and np.all(x == np.round(x))):
                raise InputTypeError(f"{where} takes integer token ids; got {x.dtype} values "
                                     "that are not whole numbers")
            if x.size and float(np.max(np.abs(x))) >= 2.0**62:  # would not survive the cast to int64
                raise InputError(f"{where} takes token ids; got {np.max(np.abs(x)):g}, beyond "
                                 "any vocabulary")
    elif x.dtype.kind != "f":
        raise InputTypeError(f"{where} takes float features, got dtype {x.dtype}")
    # The declared time axis is not enforced: Keras models declared with a
    # fixed length run on other lengths, and a stream runs one step at a
    # time; layers that need the declared length (Flatten) say so themselves.
    sequence = spec_input.token_ids or len(spec_input.shape) >= 2
    expected = (None, None) + spec_input.shape[1:] if sequence else (None,) + spec_input.shape
    if time_major and x.ndim == len(expected):
        x = x.swapaxes(0, 1)
    if x.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected, x.shape)):
        want = ", ".join("any" if e is None else str(e) for e in expected)
        axes = "time, batch" if time_major else "batch, time"
        kind = "" if spec_input.token_ids else ", features"
        shown = x.swapaxes(0, 1).shape if time_major and x.ndim == len(expected) else x.shape
        raise InputError(f"{where} must have shape ({axes}{kind}) = ({want}), got {shown}")
    return x


def fill(buffer: np.ndarray, x: np.ndarray, name: str) -> None:
    """Copy a checked input into its buffer (casting floats to the compute dtype)."""
    np.copyto(buffer, x, casting="unsafe")


def check_lengths(lengths, batch: int, steps: int) -> np.ndarray:
    array = np.asarray(lengths)
    if array.dtype.kind not in "iu":
        raise InputTypeError(f"lengths must be integers, got dtype {array.dtype}")
    if array.shape != (batch,):
        raise InputError(f"lengths must have shape (batch,) = ({batch},), got {array.shape}")
    if array.size and (array.min() < 0 or array.max() > steps):
        raise InputError(f"lengths must lie in [0, {steps}] (the number of timesteps), "
                         f"got min {array.min()} and max {array.max()}")
    return array


# -- streams ----------------------------------------------------------------------------------


class Stream:
    """A model run one timestep at a time, states kept between calls (like a
    Keras stateful=True model); rows are independent streams.

    step(x_t) runs one step: (batch, features) (or (batch,) token ids) per
    input -> the outputs for that step; run(chunk) runs (batch, time, ...);
    reset() zeroes every row's state, reset(rows) the chosen ones; state reads
    or sets the states (one (directions, batch, units) array per GRU layer).
    A masked step (Masking, Embedding(mask_zero)) carries the state and
    repeats the previous step's output, exactly as inside a whole sequence, so
    a stream reproduces the whole-sequence outputs step by step.  One call at
    a time per stream (calls from several threads are serialised).  A Stream
    does not pickle: it holds live state; pickle the Model and copy `state`
    across.
    """

    def __init__(self, model: Model, batch_size: int = 1, *, num_threads: Optional[int] = None):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        shapes = model.spec.shapes()
        for node in model.spec.nodes:
            reason = node.layer.refuses_step([shapes[ref] for ref in node.inputs])
            if reason is not None:
                raise InputError(f"{node.layer.kind} layer {node.layer.name!r} cannot be "
                                 f"streamed: {reason}")
        self.model = model
        self.batch_size = batch_size
        self.num_threads = resolve_num_threads(num_threads)
        self._states: dict = {}
        self._lock = _runtime()._core.Lock()
        self._programs: dict = {}
        step = self._compiled(1)
        inputs = model.spec.inputs
        # Which outputs are sequences (a time axis to drop from a step's output).
        declared = {i.name: (None,) + i.shape[1:] for i in inputs}
        self._sequence_outputs = [shape[:1] == (None,)
                                  for shape in model.spec.output_shapes(declared)]
        if len(inputs) == 1:
            shape = (batch_size,) + tuple(step.inputs[inputs[0].name].shape[2:])
            outputs = [o[:, 0] if sequence else o
                       for o, sequence in zip(step.outputs, self._sequence_outputs)]
            step.program.bind_step(self._lock, shape, self._convert_step, outputs)
            self.step = step.program.step  # the hot path: one call into compiled code

    def __reduce__(self):
        raise TypeError("a Stream holds live state and cannot be pickled; pickle the Model and "
                        "call model.stream() where it arrives (copy stream.state across to "
                        "carry on from the same state)")

    def __repr__(self):
        return f"<gru_infer.Stream batch_size={self.batch_size} of {self.model!r}>"

    def _compiled(self, steps: int):
        found = self._programs.get(steps)
        if found is None:
            shapes = {}
            for spec_input in self.model.spec.inputs:
                row = tuple(steps if i == 0 else s for i, s in enumerate(spec_input.shape))
                if None in row:
                    raise InputError(f"input {spec_input.name!r} does not declare its number of "
                                     f"features {spec_input.shape}; a stream needs it")
                shapes[spec_input.name] = (self.batch_size,) + row
            found = compile_program(self.model, shapes, self.num_threads, self._states)
            found.program.set_flags(False)
            self._programs[steps] = found
        return found

    # -- state -----------------------------------------------------------------------

    @property
    def state(self) -> List[np.ndarray]:
        """The current states, one (directions, batch, units) copy per GRU layer;
        assign a list of such arrays to set them."""
        with self._lock:
            return [self._layer_state(layer) for layer in self.model.recurrent_layers]

    def _layer_state(self, layer: Recurrent) -> np.ndarray:
        return self._states[(layer.name, 0)].copy()

    @state.setter
    def state(self, states: Sequence["ArrayLike"]) -> None:
        states = list(states)
        layers = self.model.recurrent_layers
        if len(states) != len(layers):
            raise InputError(f"state must hold one array per GRU layer ({len(layers)}), "
                             f"got {len(states)}")
        values = []
        for layer, value in zip(layers, states):
            target = self._states[(layer.name, 0)]
            value = np.asarray(value)
            if value.shape != target.shape or value.dtype.kind != "f":
                raise InputError(f"state of GRU {layer.name!r} must be a float array of shape "
                                 f"{target.shape}, got {value.dtype} {value.shape}")
            values.append(value)
        with self._lock:
            for layer, value in zip(layers, values):
                self._states[(layer.name, 0)][...] = value

    def reset(self, rows: Optional["ArrayLike"] = None) -> None:
        """Zero the state of every row, or of the given rows (ints or a bool mask)."""
        with self._lock:
            for state in self._states.values():
                if rows is None:
                    state[...] = 0
                    continue
                try:
                    state[:, rows] = 0
                except IndexError as error:
                    raise InputError(f"rows {rows!r} do not index a batch of "
                                     f"{self.batch_size}: {error}") from None

    # -- running ---------------------------------------------------------------------------

    def _convert_step(self, x_t) -> np.ndarray:
        """One step's input as the step buffer's dtype and shape, or an error."""
        spec_input = self.model.spec.inputs[0]
        x = check_input(spec_input, np.asarray(x_t)[:, None] if np.ndim(x_t) >= 1 else x_t,
                        False, False)
        if x.shape[0] != self.batch_size:
            raise InputError(f"this stream has batch_size {self.batch_size}, got a step of "
                             f"shape {np.shape(x_t)}")
        step = self._compiled(1)
        buffer = step.inputs[spec_input.name]
        if x.shape != buffer.shape:
            raise InputError(f"a step must have shape {(self.batch_size,) + buffer.shape[2:]}, "
                             f"got {np.shape(x_t)}")
        return np.ascontiguousarray(x, buffer.dtype)  # copied into the step buffer

    def run(self, x_chunk: "ArrayLike", *more: "ArrayLike") -> Union[np.ndarray, List[np.ndarray]]:
        """Outputs for a chunk (batch, time, ...) per input; states move to its end."""
        inputs = self.model.check_inputs((x_chunk,) + more)
        first = next(iter(inputs.values()))
        if first.shape[0] != self.batch_size:
            raise InputError(f"this stream has batch_size {self.batch_size}, got a chunk of "
                             f"shape {first.shape}")
        with self._lock:
            compiled = self._compiled(first.shape[1])
            for name, x in inputs.items():
                fill(compiled.inputs[name], x, name)
            compiled.program.run()
            outputs = [self.model._from_batch_first(np.array(o)) for o in compiled.outputs]
        return outputs[0] if len(outputs) == 1 else outputs

    def step(self, x_t: "ArrayLike", *more: "ArrayLike", out: Any = None
             ) -> Union[np.ndarray, List[np.ndarray]]:
        """Outputs for one timestep: x_t (batch, features) or (batch,) token ids
        per input.  out: an array (or a list, one per output) to write into."""
        chunk = [np.asarray(x)[None] if self.model.time_major else np.asarray(x)[:, None]
                 for x in (x_t,) + more]
        outputs = self.run(*chunk)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        time_axis = 0 if self.model.time_major else 1
        results = [o.take(0, time_axis) if sequence else o
                   for o, sequence in zip(outputs, self._sequence_outputs)]
        if out is not None:
            targets = out if isinstance(out, (list, tuple)) else [out]
            if len(targets) != len(results):
                raise InputError(f"out must hold {len(results)} arrays, got {len(targets)}")
            for target, result in zip(targets, results):
                if not isinstance(target, np.ndarray) or target.shape != result.shape or \
                        target.dtype != result.dtype:
                    raise InputError(f"out must be a {result.dtype} array of shape "
                                     f"{result.shape}, got {getattr(target, 'dtype', None)} "
                                     f"{getattr(target, 'shape', None)}")
                target[...] = result
            return out
        return results[0] if len(results) == 1 else results

