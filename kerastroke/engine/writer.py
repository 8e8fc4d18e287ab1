"""The one place where weights are written.

`apply_rules` is pure: it runs a list of rules over one weight tensor and
returns the new tensor with the number of entries that changed.
`write_model` does that for a callback's variables and assigns the results
only once every rule has succeeded on every variable, so a failure leaves
the model as it was.
"""

import math
import numbers

import keras
import numpy as np
from keras import ops

from kerastroke import selectors
from kerastroke.accel import host, kernels
from kerastroke.core import arrays, seeds
from kerastroke.engine import persistence, probes


def _describe(index, rule, piece, where):
    place = f" on variable '{where}'" if where else ""
    return f"kerastroke: rule {index} ({piece}={getattr(rule, piece)!r}) failed{place}"


def _reraise_with_context(exc, message):
    """Raises `exc` itself, its type unchanged, with `message` added.

    Python 3.11+ shows the note under the error; on 3.10, which has no
    `add_note`, the message also goes into the error's own text.
    """
    if hasattr(exc, "add_note"):
        exc.add_note(message)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", ()), message]
        if len(exc.args) == 1 and isinstance(exc.args[0], str):
            exc.args = (f"{exc.args[0]}\n{message}",)
    raise exc


def _real(value):
    """`value` as a Python float if it is a real number (a Python or NumPy
    float or int, or a 0-d float or int tensor), else None: bools and strings
    are not amounts, though `float()` takes them."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if dtype is None or shape is None or tuple(shape) != ():
        return None
    dtype = keras.backend.standardize_dtype(dtype)
    if "float" not in dtype and "int" not in dtype:
        return None
    return float(arrays.to_numpy(value))


def amounts(rules, step):
    """Each rule's amount at `step`, checked to be a float or int in [0, 1]."""
    result = []
    for index, rule in enumerate(rules):
        try:
            returned = rule.schedule(step)
        except Exception as exc:
            _reraise_with_context(exc, _describe(index, rule, "schedule", ""))
        amount = _real(returned)
        if amount is None:
            raise TypeError(
                f"kerastroke: rule {index}'s schedule {rule.schedule!r} returned "
                f"{returned!r} ({type(returned).__name__}) at step {step}; an amount must be "
                "a float or int in [0, 1]."
            )
        if not 0.0 <= amount <= 1.0:
            raise ValueError(
                f"kerastroke: rule {index}'s schedule {rule.schedule!r} returned "
                f"{returned!r} at step {step}; an amount must be a float in [0, 1]."
            )
        result.append(amount)
    return result


def _checked(result, shape, dtype, index, rule, piece, where, on_host=False):
    """`result` as a tensor (a NumPy array if `on_host`), checked for shape and dtype."""
    if result is None:
        raise TypeError(
            f"{_describe(index, rule, piece, where)}: it returned None instead of "
            f"{'a bool mask' if piece == 'selector' else 'new values'} of shape {shape}."
        )
    try:
        result = np.asarray(result) if on_host else arrays.tensor(result)
    except Exception as exc:
        _reraise_with_context(exc, f"{_describe(index, rule, piece, where)}: its result is not an array")
    problems = []
    if arrays.shape(result) != shape:
        problems.append(f"shape {arrays.shape(result)} instead of {shape}")
    if arrays.dtype_name(result) != dtype:
        problems.append(f"dtype {arrays.dtype_name(result)} instead of {dtype}")
    if problems:
        raise ValueError(f"{_describe(index, rule, piece, where)}: it returned " + " and ".join(problems))
    return result


def _select(rule, index, current, amount, seed, where, inputs=None):
    declared = _declared_inputs(rule, index, inputs, where)
    try:
        mask = rule.selector(current, amount, seed, **declared)
    except Exception as exc:
        _reraise_with_context(exc, _describe(index, rule, "selector", where))
    return _checked(mask, arrays.shape(current), "bool", index, rule, "selector", where)


def _declared_inputs(rule, index, inputs, where):
    """The inputs `rule.selector` declares (`probes.declared`), taken from `inputs`."""
    names = probes.declared(rule.selector)
    missing = [name for name in names if name not in (inputs or {})]
    if missing:
        raise ValueError(
            f"{_describe(index, rule, 'selector', where)}: it declares the inputs {missing}, and "
            "none was measured: give the callback a `probe=(x, y)` batch."
        )
    return {name: inputs[name] for name in names}


def _refuse_non_finite(bad, index, rule, where):
    """Raises if `bad` (entries a mutator made NaN or infinite) has any."""
    count = arrays.count(bad)
    if count:
        raise ValueError(
            f"{_describe(index, rule, 'mutator', where)}: it gave {count} selected entries a NaN or "
            "infinite value; nothing was written. New values must be finite."
        )


def _rule_seed(seed, index):
    return seeds.derive(seed, "rule", index)


def _step(rule, index, current, amount, seed, where, mask=None, inputs=None):
    """One rule on one tensor: select (unless `mask` is given), mutate, merge."""
    rule_seed = _rule_seed(seed, index)
    if mask is None:
        mask = _select(rule, index, current, amount, seeds.derive(rule_seed, "select"), where, inputs)
    try:
        new = rule.mutator(current, mask, seeds.derive(rule_seed, "mutate"))
    except Exception as exc:
        _reraise_with_context(exc, _describe(index, rule, "mutator", where))
    new = _checked(new, arrays.shape(current), arrays.dtype_name(current), index, rule, "mutator", where)
    # Only values that become non-finite at selected entries: weights that
    # were NaN or inf already (selected or not) are the model's own. A
    # finite sum settles the usual case in one pass (torch's CPU `isfinite`
    # costs 3x a sum); NaN, inf or an overflowing sum take the exact check.
    if not np.isfinite(arrays.to_numpy(ops.sum(new))):
        introduced = ops.logical_and(ops.logical_not(ops.isfinite(new)), ops.isfinite(current))
        _refuse_non_finite(ops.logical_and(mask, introduced), index, rule, where)
    if getattr(rule.mutator, "keeps_unselected", False):
        # Built-in mutators already leave unselected entries bit-identical
        # (property-tested); merging again would cost a full pass.
        return new
    return arrays.merge(mask, new, current)


def _differs(new, original, xp=ops):
    """Entries whose value changed; a NaN that stays NaN has not, nor a zero
    that changes sign.

    `xp` is `keras.ops` for backend tensors or `numpy` for host arrays.
    Backend tensors are compared on their bit patterns: TensorFlow's CPU
    kernels compare a subnormal as zero.
    """
    both_nan = xp.logical_and(xp.isnan(new), xp.isnan(original))
    if xp is np:
        return xp.logical_and(xp.not_equal(new, original), xp.logical_not(both_nan))
    int_dtype = arrays.bits_dtype(arrays.dtype_name(original))
    same_bits = ops.equal(ops.view(new, int_dtype), ops.view(original, int_dtype))
    both_zero = ops.logical_and(arrays.is_zero(new), arrays.is_zero(original))
    same = ops.logical_or(same_bits, ops.logical_or(both_nan, both_zero))
    return ops.logical_not(same)


def _constrained(variable, new):
    """`new` through the variable's own constraint (`kernel_constraint=...`), as
    Keras applies it after every optimizer step: written values obey it too.

    The whole tensor goes through it, as in Keras (a norm constraint rescales
    every entry of a column), and only for variables that have one.
    """
    constraint = persistence.own_constraint(variable)
    if constraint is None:
        return new
    try:
        result = arrays.tensor(constraint(new))
    except Exception as exc:
        _reraise_with_context(
            exc, f"kerastroke: the constraint {constraint!r} of variable '{variable.path}' failed on the new values"
        )
    if arrays.shape(result) != arrays.shape(new):
        raise ValueError(
            f"kerastroke: the constraint {constraint!r} of variable '{variable.path}' returned shape "
            f"{arrays.shape(result)} instead of {arrays.shape(new)}; nothing was written."
        )
    return ops.cast(result, arrays.dtype_name(new))


def _run(current, rules, rule_amounts, seed, where):
    """Every rule with a non-zero amount, in order, on one tensor."""
    for index, (rule, amount) in enumerate(zip(rules, rule_amounts)):
        if amount:
            current = _step(rule, index, current, amount, seed, where)
    return current


def apply_rules(weights, rules, step, seed, where="", rule_amounts=None):
    """Applies `rules` in order to one weight tensor; pure.

    Rule `i` draws with seeds derived from `(seed, i)`, so adding a rule never
    changes what the others draw. Every rule acts on this tensor alone (a
    rule with `scope="global"` needs the other tensors: see `write_model`).

    Args:
        weights: Tensor or NumPy array.
        rules: Sequence of `Rule`.
        step: The step passed to each rule's schedule.
        seed: Python int for this tensor at this step.
        where: A name for error messages (the variable's path).
        rule_amounts: Precomputed `amounts(rules, step)`, to skip the schedules.

    Returns:
        `(new_weights, changed)`: a tensor of the same shape and dtype, and the
        number of entries whose value differs from the input (NaN kept as NaN
        does not count).
    """
    original = arrays.tensor(weights)
    if rule_amounts is None:
        rule_amounts = amounts(rules, step)
    current = _run(original, rules, rule_amounts, seed, where)
    if current is original:
        return original, 0
    return current, arrays.count(_differs(current, original))


def _global_masks(rule, index, currents, amount, seed, inputs=None):
    """Runs a global-scope selector once over all tensors; one mask per tensor."""
    wide = "float64" if any(arrays.dtype_name(c) == "float64" for c in currents) else "float32"
    flat = ops.concatenate([ops.reshape(ops.cast(c, wide), (-1,)) for c in currents])
    flat_inputs = None
    if inputs is not None:  # each input the selector declares, joined like the weights
        flat_inputs = {
            name: ops.concatenate([ops.reshape(ops.cast(i[name], wide), (-1,)) for i in inputs])
            for name in probes.declared(rule.selector)
        }
    mask = _select(
        rule, index, flat, amount, seeds.derive(seed, "global", index), "all targeted variables", flat_inputs
    )
    masks, offset = [], 0
    for current in currents:
        size = math.prod(arrays.shape(current))
        masks.append(ops.reshape(mask[offset:offset + size], arrays.shape(current)))
        offset += size
    return masks


def _by_index_limit(mutator):
    """The largest selected fraction for which `_write_drawn` writes by index.

    A mutator that fills one value merges densely with a single `where`,
    cheaper than an index per entry once more than 1/8 of the entries are
    selected (an index and a value cost ~8-16 bytes per entry against ~4 per
    entry for a dense float32 write). Any other drawing mutator places its
    values by index either way.
    """
    return 1 / 8 if getattr(mutator, "fills_one_value", False) else 1.0


def _compiled_selection(rule, amount, size, dtype, rule_seed):
    """What `kernels` needs to run `rule`'s selector, or None if it cannot.

    Returns `("marks", bitmap)` for `random_fraction` (the picks of
    `arrays.choose` on all entries, drawn the same way) or `("range", lo,
    hi)` for `value_range` at amount 1 (the bounds `arrays.in_range` uses).
    """
    # Exact types: a subclass may select differently.
    if type(rule.selector) is selectors.RandomFraction:
        k = round(amount * size)
        if 2 * k > size:
            return None  # `arrays.choose` draws the complement: not a loop here
        return "marks", arrays.random_marks(size, k, seeds.derive(rule_seed, "select"))
    if type(rule.selector) is selectors.ValueRange and amount == 1.0:
        low, high = rule.selector.low, rule.selector.high
        return "range", arrays.at_least(low, dtype), arrays.at_most(high, dtype)
    return None


def _compiled(variable, rule, index, amount, seed):
    """Runs one built-in rule with `kernels`' compiled loops, if they can.

    Returns:
        `(new, changed, zeros)`: the tensor to assign (None if nothing
        changed), the entries changed and the zeros of the result; or None
        (nothing done) when the loops cannot run it: another piece, a dtype
        they lack, weights not in host memory, or no Numba.
    """
    if not (kernels.available() and kernels.fills(rule.mutator)):
        return None
    dtype = arrays.dtype_name(variable)
    if dtype not in kernels.DTYPES:
        return None
    value = variable.value
    weights = host.view(value)
    if weights is None:
        return None
    rule_seed = _rule_seed(seed, index)
    selection = _compiled_selection(rule, amount, weights.size, dtype, rule_seed)
    if selection is None:
        return None
    try:
        fill = kernels.Fill(rule.mutator, dtype, seeds.derive(rule_seed, "mutate"))
    except ValueError:
        # Bounds or a value the dtype cannot hold: the pure pieces raise it,
        # with context, if and only if an entry is selected.
        return None
    flat = weights.reshape(-1)
    if selection[0] == "marks":
        new, changed, zeros = kernels.marked(flat, selection[1], fill)
    else:
        new, changed, zeros = kernels.in_range(flat, selection[1], selection[2], fill)
    del weights, flat, value
    return (host.lend(new.reshape(arrays.shape(variable))) if changed else None), changed, zeros


def _drawn(variable, rule, index, amount, seed):
    """The by-index path of `write_model` for a rule whose mutator has `values_at`.

    `mutator(w, mask, seed)` equals `w` with `mutator.values_at(dtype,
    positions, seed)` put at the mask's flat positions, so only those entries
    are drawn and compared, and the merge is one copy plus an indexed store.
    Indices, comparison and merge run in NumPy on the host: on TensorFlow's
    CPU kernels a `nonzero` or a scatter into a copy costs several times
    more, and NumPy's fresh buffers do not pay TensorFlow's page faults.

    The new tensor is assigned whole. TensorFlow's in-place
    `scatter_nd_update` would save the copy, but it switches the variable to
    copy-on-read for good: every later read, each training step's included,
    would copy the whole variable.

    Returns:
        `(new, changed)`: the tensor to assign (None if nothing changed) and
        the number of entries changed.
    """
    rule_seed = _rule_seed(seed, index)
    original = arrays.tensor(variable.value)
    mask = _select(rule, index, original, amount, seeds.derive(rule_seed, "select"), variable.path)
    host_mask = ops.convert_to_numpy(mask)
    selected = int(np.count_nonzero(host_mask))
    if not selected:
        return None, 0
    if selected > host_mask.size * _by_index_limit(rule.mutator):
        new = _step(rule, index, original, amount, seed, variable.path, mask)
        changed = arrays.count(_differs(new, original))
        return (new if changed else None), changed
    del mask
    dtype = arrays.dtype_name(original)
    index_dtype = np.int32 if host_mask.size < 2**31 else np.int64
    flat = np.flatnonzero(host_mask).astype(index_dtype, copy=False)
    del host_mask
    try:
        values = rule.mutator.values_at(dtype, flat, seeds.derive(rule_seed, "mutate"))
    except Exception as exc:
        _reraise_with_context(exc, _describe(index, rule, "mutator", variable.path))
    values = _checked(values, (selected,), dtype, index, rule, "mutator", variable.path, on_host=True)
    new = host.copy(original)
    del original
    flat_new = new.reshape(-1)
    old = flat_new[flat]
    _refuse_non_finite(np.logical_and(~np.isfinite(values), np.isfinite(old)), index, rule, variable.path)
    changed = int(np.count_nonzero(_differs(values, old, xp=np)))
    if not changed:
        return None, 0
    flat_new[flat] = values
    return host.lend(new), changed


def write_model(variables, rules_of, step, seed_of, seed, rule_amounts, changed=None, zeros=None,
                inputs=None):
    """Applies rules to several variables: computes every new value, then assigns.

    Args:
        variables: The Keras variables to write.
        rules_of: `variable -> list of Rule` (the callback binds initializers).
        step: The step passed to each schedule.
        seed_of: `variable -> int`, the seed of that variable's draws.
        seed: The callback's seed at this step, for global-scope selections.
        rule_amounts: `amounts(rules, step)`, the same for every variable.
        changed: Optional `(variable, bool mask) -> None`, called for every
            variable written, once every variable is assigned, with the
            entries that changed.
        zeros: Optional dict, given `{id(variable): entries exactly zero}`
            for the variables whose zeros were counted on the way.
        inputs: Optional `{id(variable): {name: tensor}}`, the inputs that
            selectors declare (`probes.declared`), measured beforehand.

    Returns:
        The number of entries that changed, over all variables.

    Nothing is assigned until every rule (and every layer constraint) has run
    on every variable: a failure anywhere leaves every variable, and so the
    optimizer state that `changed` resets, as it was.
    """
    writes = _compute(variables, rules_of, seed_of, seed, rule_amounts, with_masks=changed is not None,
                      inputs=inputs)
    if zeros is not None:
        zeros.update({id(v): z for v, _, _, _, z in writes if z is not None})
    commit([(v, new, differs) for v, new, count, differs, _ in writes if count], changed)
    return sum(count for _, _, count, _, _ in writes)


def commit(assignments, changed=None):
    """Assigns new values computed beforehand, then reports what changed.

    The last step of every write: call it only once every new value of the
    application exists, so that a failure before it changes nothing.

    Args:
        assignments: `(variable, new value, changed mask or None)` triples.
        changed: Optional `(variable, bool mask) -> None`, called for each
            variable once every variable is assigned (optimizer state resets
            and moving averages follow it).
    """
    for variable, new, _ in assignments:
        variable.assign(new)
    if changed is not None:
        for variable, _, differs in assignments:
            changed(variable, differs)


def _compute(variables, rules_of, seed_of, seed, rule_amounts, with_masks, inputs=None):
    """Every variable's new value, without assigning any.

    Returns:
        A list of `(variable, new, changed, differs, zeros)`: the tensor to
        assign (unused when `changed` is 0), the entries changed, their mask
        (only `with_masks`) and the zeros of the result where counted on the
        way (else None).
    """
    if not variables:
        return []
    rules = rules_of(variables[0])
    active = [index for index, amount in enumerate(rule_amounts) if amount]
    if (
        not with_masks
        and not inputs
        and len(active) == 1
        and rules[active[0]].scope == "tensor"
        and all(hasattr(rules_of(v)[active[0]].mutator, "values_at") for v in variables)
        and all(persistence.own_constraint(v) is None for v in variables)
    ):
        # One rule whose new values do not depend on the old ones: draw,
        # compare and scatter only the selected entries.
        index = active[0]
        writes = []
        for variable in variables:
            rule, amount, variable_seed = rules_of(variable)[index], rule_amounts[index], seed_of(variable)
            compiled = _compiled(variable, rule, index, amount, variable_seed)
            if compiled is None:
                new, count = _drawn(variable, rule, index, amount, variable_seed)
                writes.append((variable, new, count, None, None))
            else:
                new, count, zero_count = compiled
                writes.append((variable, new, count, None, zero_count))
        return writes
    # One read per variable: every later use shares this tensor instead of re-reading it.
    originals = [arrays.tensor(variable.value) for variable in variables]
    currents = list(originals)
    measured = [inputs.get(id(v)) for v in variables] if inputs else [None] * len(variables)
    for index, amount in enumerate(rule_amounts):
        if not amount:
            continue
        masks = [None] * len(variables)
        if rules[index].scope == "global":
            masks = _global_masks(rules[index], index, currents, amount, seed, measured if inputs else None)
        currents = [
            _step(rules_of(v)[index], index, current, amount, seed_of(v), v.path, mask, measured_v)
            for v, current, mask, measured_v in zip(variables, currents, masks, measured)
        ]
    writes = []
    for variable, original, new in zip(variables, originals, currents):
        if new is original:
            writes.append((variable, new, 0, None, None))
            continue
        new = _constrained(variable, new)
        differs = _differs(new, original)
        writes.append((variable, new, arrays.count(differs), differs if with_masks else None, None))
    return writes
