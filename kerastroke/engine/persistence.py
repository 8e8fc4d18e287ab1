"""Persistent sparsity: entries held at zero after every optimizer step.

Keras 3 runs a variable's `constraint` after each optimizer update, on every
backend. A persistent callback gives each targeted variable a `HoldZeros`
constraint whose keep-mask is an integer variable; each application
rewrites the mask (the entries that are exactly zero after it), so pruned
entries cannot regrow in between. The mask is derived from the weights
themselves, which is what makes resumed training exact.

The masks are state of the compiled train step, never constants traced into
it, so an application only assigns them and no backend retraces:

- TensorFlow's `tf.function` captures the mask variables and reads them at
  every step; PyTorch's step runs eagerly and reads them too. Either needs
  the constraint attached before the train function is first traced, which
  `PlasticityCallback.on_train_begin` does (masks that hold nothing yet).
- Keras's JAX trainer passes the model's and the optimizer's variables into
  its jitted step and takes them back out: anything else the step reads is
  a constant of the compiled code. There the masks are tracked by the
  optimizer during `fit` (its innermost one, under a `LossScaleOptimizer`),
  and left out of what it saves, so a checkpoint holds exactly the state of
  a plain model and loads into one.

`strip(model)` removes all of it; the model is then a plain Keras model
(nothing is ever attached to layer configs, so `model.save` works either
way and needs no custom objects).

For the same reason a saved model reloads without the holds: its zeros are
in the weights, but training it without the callback lets them regrow.
Attaching the persistent callback again holds them again, since the held set
is read from the weights (at the first epoch when the optimizer's step count
is above 0, as after loading a model saved with its optimizer; otherwise at
the callback's first application).
"""

import contextlib

import keras
from keras import ops

from kerastroke import accel
from kerastroke.core import arrays


class HoldZeros(keras.constraints.Constraint):
    """Keeps the entries outside `keep` at exactly +0.0, after an optional inner constraint.

    The weights' bit patterns are ANDed with `keep`: all ones where a weight
    may change (its bits pass through untouched, subnormals and NaN
    included), all zeros where it is held (+0.0). Unlike a multiply by a
    0/1 mask it never leaves a -0.0 or a NaN in a held entry. On TensorFlow
    the same is a `where` over `keep` cast to bool, which selects bits
    without arithmetic: there the integer AND was the slower (17 kernels
    of 256 x 256 after each step, 1.05 against 0.82 ms; persistent
    MagnitudePruning's `fit`, in alternation over six pairs of runs,
    1.156x against 1.084x plain `fit`, medians). On PyTorch the AND is
    twice as fast as a `where`; under `jax.jit` both fuse.

    Args:
        keep: A non-trainable integer `keras.Variable` of the weights' shape,
            as wide as their dtype: -1 (all bits set) where the weight may
            change, 0 where it is held at zero.
        inner: The constraint the variable had before, applied first.

    Example:
    >>> import keras, numpy as np
    >>> keep = keras.Variable(np.array([-1, 0], "int32"), trainable=False)
    >>> np.asarray(HoldZeros(keep)(keras.ops.convert_to_tensor([1.5, 2.5], "float32"))).tolist()
    [1.5, 0.0]
    """

    def __init__(self, keep, inner=None):
        self.keep = keep
        self.inner = inner
        self.state = None  # the `_StateMasks` passing `keep` into a compiled step, if any

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        # Keras passes the variable itself; JAX needs plain arrays. Inside
        # the JAX trainer's step both read the values it passed in.
        w = ops.convert_to_tensor(w)
        keep = ops.convert_to_tensor(self.keep)
        if keras.backend.backend() == "tensorflow":
            return ops.where(ops.cast(keep, "bool"), w, ops.zeros((), w.dtype))
        return ops.view(ops.bitwise_and(ops.view(w, keep.dtype), keep), w.dtype)


def _needs_state(optimizer):
    """Whether masks must be variables of `optimizer` for a compiled step to read them as state."""
    return optimizer is not None and keras.backend.backend() == "jax"


class _StateMasks:
    """Masks tracked by an optimizer so that Keras's JAX trainer passes them as state.

    Tracked by the innermost optimizer of `chain` (outermost first), whose
    `stateless_apply` runs the constraints; every optimizer of the chain
    lists them in `variables`, so each one's `save_own_variables` and
    `load_own_variables` is replaced, on that instance only, by one that
    leaves the masks out: a checkpoint then matches a plain model's, in both
    directions (otherwise Keras skips loading an optimizer whose variable
    count differs, and the Adam moments are lost).
    """

    def __init__(self, chain):
        self.chain = chain
        self.masks = []
        for optimizer in chain:
            for name in ("save_own_variables", "load_own_variables"):
                setattr(optimizer, name, _WithoutMasks(self, getattr(optimizer, name), name in vars(optimizer)))

    @classmethod
    def of(cls, optimizer):
        """The masks `optimizer` tracks, set up at the first call."""
        chain = [optimizer]
        while getattr(chain[-1], "inner_optimizer", None) is not None:
            chain.append(chain[-1].inner_optimizer)
        found = vars(chain[0]).get("save_own_variables")
        if isinstance(found, _WithoutMasks):
            return found.masks
        return cls(chain)

    def add(self, mask):
        inner = self.chain[-1]
        locked = inner._tracker.locked
        inner._tracker.unlock()
        inner._track_variable(mask)
        if locked:
            inner._tracker.lock()
        self.masks.append(mask)

    def remove(self, mask):
        """Untracks `mask`; with the last one gone, the optimizers save as their class does."""
        self.chain[-1]._untrack_variable(mask)
        self.masks = [kept for kept in self.masks if kept is not mask]
        if self.masks:
            return
        for optimizer in self.chain:
            for name in ("save_own_variables", "load_own_variables"):
                override = vars(optimizer).get(name)
                if isinstance(override, _WithoutMasks) and override.masks is self:
                    if override.was_own:
                        setattr(optimizer, name, override.method)
                    else:
                        delattr(optimizer, name)

    @contextlib.contextmanager
    def hidden(self):
        """The innermost optimizer's variable list without the masks, for the duration."""
        variables = self.chain[-1]._variables  # the tracker's own list: changed in place
        everything = list(variables)
        masks = {id(mask) for mask in self.masks}
        variables[:] = [variable for variable in everything if id(variable) not in masks]
        try:
            yield
        finally:
            variables[:] = everything


class _WithoutMasks:
    """An optimizer's `save_own_variables` or `load_own_variables`, run with the masks hidden."""

    def __init__(self, masks, method, was_own):
        self.masks = masks
        self.method = method
        self.was_own = was_own  # `method` was set on the instance rather than its class

    def __call__(self, store):
        with self.masks.hidden():
            return self.method(store)


def attach(variables, optimizer=None):
    """Gives each of `variables` a `HoldZeros` (holding nothing yet) unless it has one.

    Args:
        variables: The variables to hold.
        optimizer: The optimizer of the `fit` that will train them, or None
            (a custom training loop). On JAX the masks become its state (see
            the module docstring); on other backends it is not needed.

    Returns:
        True if a train function traced before this call would not see the
        holds (a constraint attached, or a mask made state of `optimizer`):
        rebuild it once. Assigning the masks later never needs that.
    """
    state = _needs_state(optimizer)
    owner = None
    changed = False
    for variable in variables:
        constraint = variable.constraint
        if not isinstance(constraint, HoldZeros):
            bits = arrays.bits_dtype(variable.dtype)
            keep = keras.Variable(
                ops.full(variable.shape, -1, dtype=bits), dtype=bits, trainable=False, name="kerastroke_hold_zeros"
            )
            constraint = HoldZeros(keep, inner=constraint)
            variable.constraint = constraint
            changed = True
        if state and (constraint.state is None or constraint.state.chain[0] is not optimizer):
            owner = owner or _StateMasks.of(optimizer)
            # A mask made state of an earlier optimizer (the model was compiled again) moves.
            if constraint.state is not None:
                constraint.state.remove(constraint.keep)
            owner.add(constraint.keep)
            constraint.state = owner
            changed = True
    return changed


def keep_mask(value, zeros=None):
    """The `HoldZeros` mask that holds the entries of `value` exactly zero now.

    Pure and traceable: the writer computes it inside its compiled
    application, beside the new values.

    Args:
        value: A float tensor.
        zeros: `arrays.is_zero(value)`, where the caller has it already.

    Example:
    >>> import keras, numpy as np
    >>> keras.ops.convert_to_numpy(keep_mask(np.array([0.0, -0.0, 2.0], "float32"))).tolist()
    [0, 0, -1]
    """
    value = ops.convert_to_tensor(value)
    held = arrays.is_zero(value) if zeros is None else zeros
    return ops.negative(ops.cast(ops.logical_not(held), arrays.bits_dtype(value.dtype)))


def hold_zeros(variables, keeps=None):
    """Holds the entries of each of `variables` that are exactly zero now.

    Attaches the `HoldZeros` constraints the variables lack (see `attach`),
    then assigns every mask at once: a compiled train step reads the new
    masks at its next call.

    Args:
        variables: The variables to hold.
        keeps: Optional masks already computed from the variables' current
            values (`keep_mask`), one per variable, as the writer gives
            them; computed here otherwise.

    Returns:
        True if a constraint was attached (a train function traced before
        must then be rebuilt to see it), False if only masks were updated.
    """
    variables = list(variables)
    if keeps is None:
        keeps = [keep_mask(variable.value) for variable in variables]
    attached = attach(variables)
    accel.assign([variable.constraint.keep for variable in variables], list(keeps))
    return attached


def own_constraint(variable):
    """The constraint `variable` has of its own: the one a `HoldZeros` wraps, else its constraint.

    A writer applies it to the values it writes; the `HoldZeros` mask is
    renewed from the written weights afterwards, so it must not see them.
    """
    constraint = variable.constraint
    return constraint.inner if isinstance(constraint, HoldZeros) else constraint


def hold_again(variable):
    """Applies `variable`'s `HoldZeros` to its value now, outside an optimizer step.

    For weights written over by something other than an optimizer step:
    `fit` ends by copying an optimizer's moving averages (`use_ema=True`)
    over the weights, and those averages were updated before the constraint
    held the zeros at each step.

    Returns:
        True if the variable has a `HoldZeros` (and was written), else False.
    """
    constraint = variable.constraint
    if not isinstance(constraint, HoldZeros):
        return False
    variable.assign(constraint(variable.value))
    return True


def release(variable):
    """Removes a `HoldZeros` constraint, restoring the one it wrapped, and its mask from any optimizer."""
    constraint = variable.constraint
    if not isinstance(constraint, HoldZeros):
        return False
    if constraint.state is not None:
        constraint.state.remove(constraint.keep)
        constraint.state = None
    variable.constraint = constraint.inner
    return True


def strip(model):
    """Removes everything kerastroke attached to `model`'s variables and optimizer.

    After this the model trains as a plain Keras model: zeros it holds are
    kept as values in the weights but may regrow. Its variables, its
    optimizer's variables and what `model.save` writes are those of a model
    never given a kerastroke callback. A model saved and loaded again is in
    the same state; attach the callback again to hold them.

    Args:
        model: A Keras model.

    Returns:
        `model` itself, so calls chain: `kerastroke.strip(model).save(path)`.

    Example:
    >>> import keras, kerastroke
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> # model.fit(x, y, callbacks=[kerastroke.MagnitudePruning(0.8)])
    >>> kerastroke.strip(model) is model
    True
    """
    released = sum(release(variable) for variable in model.variables)
    if released and getattr(model, "compiled", False):
        # A train function traced with the constraints would keep applying them.
        model.make_train_function(force=True)
    return model
