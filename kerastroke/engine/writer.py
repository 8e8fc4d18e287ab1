"""The one place where weights are written.

An application runs every rule on every targeted variable in three steps:

1. `Plan` (built once per callback and model) groups the variables: those of
   one shape and dtype whose rules are equal (and that have no constraint of
   their own) are stacked on a leading axis, so one call of a piece acts on
   all of them.
2. `Plan.compute` runs one function over every group: for each rule in
   order, a global-scope selection over all groups first, else each group's
   selection, then its mutation; then the entries changed, the zeros of the
   result and, for a persistent callback, the masks that hold them. Step,
   amounts and keys (each rule's, derived on the host) are inputs, so the
   function is built once per set of active rules and reused; it is
   compiled where the backend compiles (`kerastroke.accel.compile`) when
   every piece has its batched, traceable form (`select_batch` /
   `mutate_batch`), and otherwise runs eagerly, calling plain pieces
   variable by variable. Where the weights are float32 in host memory on a
   backend whose compiled ops each take a pass over memory (TensorFlow and
   PyTorch on the CPU; on JAX, for applications with a rule that selects
   a part, whose compiled form is slow to compile), and every piece has
   its host form (`select_host` / `mutate_host`, the same values on NumPy
   batches), the same steps run on NumPy arrays through
   `kerastroke.accel.host`'s loops instead (`accel.host_path`,
   `accel.host_takes`); the bits are the same either way.
3. `commit` assigns every new value, once all of them exist: a piece that
   fails, or a mutator that makes a selected entry NaN or infinite, leaves
   the model as it was. Optimizer state that follows the written entries
   (`optimizer_state`) is then written in one batched pass.

`apply_rules` is the same computation on one tensor, as a pure function.
"""

import collections
import math
import numbers
import warnings

import keras
import numpy as np
from keras import ops

from kerastroke import accel
from kerastroke.accel import host
from kerastroke.core import arrays, hashing, picking, seeds
from kerastroke.engine import persistence

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


def _checked(result, shape, dtype, index, rule, piece, where):
    """A plain piece's `result` as a tensor, checked for shape and dtype."""
    if result is None:
        raise TypeError(
            f"{_describe(index, rule, piece, where)}: it returned None instead of "
            f"{'a bool mask' if piece == 'selector' else 'new values'} of shape {shape}."
        )
    try:
        result = arrays.tensor(result)
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




def _differs(new, original, new_zeros):
    """Entries whose value changed; a NaN that stays NaN has not, nor a zero
    that changes sign. `new_zeros` is `arrays.is_zero(new)`, which the
    application needs anyway.

    Compared on the bit patterns: TensorFlow's CPU kernels compare a
    subnormal as zero.
    """
    int_dtype = arrays.bits_dtype(arrays.dtype_name(original))
    same_bits = ops.equal(ops.view(new, int_dtype), ops.view(original, int_dtype))
    both_nan = ops.logical_and(ops.isnan(new), ops.isnan(original))
    both_zero = ops.logical_and(new_zeros, arrays.is_zero(original))
    return ops.logical_not(ops.logical_or(same_bits, ops.logical_or(both_nan, both_zero)))


def _constrained(constraint, path, new):
    """`new` through a variable's own constraint (`kernel_constraint=...`), as
    Keras applies it after every optimizer step: written values obey it too.

    The whole tensor goes through it, as in Keras (a norm constraint rescales
    every entry of a column), and only for variables that have one.
    """
    try:
        result = arrays.tensor(constraint(new))
    except Exception as exc:
        _reraise_with_context(
            exc, f"kerastroke: the constraint {constraint!r} of variable '{path}' failed on the new values"
        )
    if arrays.shape(result) != arrays.shape(new):
        raise ValueError(
            f"kerastroke: the constraint {constraint!r} of variable '{path}' returned shape "
            f"{arrays.shape(result)} instead of {arrays.shape(new)}; nothing was written."
        )
    return ops.cast(result, arrays.dtype_name(new))




def _batched(piece, method):
    """A piece's batched form, or None: the capability the piece protocol declares."""
    return getattr(piece, method, None)


def traceable(rule):
    """True if both of the rule's pieces have their batched form."""
    return _batched(rule.selector, "select_batch") is not None and _batched(rule.mutator, "mutate_batch") is not None


def _on_host(groups):
    """True if the CPU path takes these groups' applications (see `accel.host_path`):
    float32 variables without a constraint of their own, per-tensor rules
    whose pieces have host forms and declare no measured inputs."""
    for group in groups:
        if group.dtype != "float32" or group.constraint is not None:
            return False
        for rule in group.rules:
            if rule.scope != "tensor" or getattr(rule.selector, "inputs", ()):
                return False
            if _batched(rule.selector, "select_host") is None or _batched(rule.mutator, "mutate_host") is None:
                return False
    return accel.host_path([variable for group in groups for variable in group.variables])


class _Group:
    """Variables stacked and run together: one shape, one dtype, equal rules."""

    def __init__(self, variable, rules):
        self.variables = [variable]
        self.rules = rules
        self.shape = arrays.shape(variable)
        self.dtype = arrays.dtype_name(variable)
        self.constraint = persistence.own_constraint(variable)
        self.reader = None  # the CPU path's read of every variable (`accel.host_reader`)

    def takes(self, variable, rules):
        return (
            self.constraint is None
            and persistence.own_constraint(variable) is None
            and arrays.shape(variable) == self.shape
            and arrays.dtype_name(variable) == self.dtype
            and rules == self.rules
        )


def _grouped(variables, rules_of):
    groups = []
    for variable in variables:
        rules = rules_of(variable)
        for group in groups:
            if group.takes(variable, rules):
                group.variables.append(variable)
                break
        else:
            groups.append(_Group(variable, rules))
    return groups


Write = collections.namedtuple("Write", "variable new changed differs zeros keep")
Write.__doc__ = "One variable's result of an application (see `Plan.compute`)."


class Plan:
    """How one callback's rules are applied to one model's variables.

    Args:
        variables: The targeted Keras variables.
        rules_of: `variable -> list of Rule` (the callback binds initializers).
        name: Who applies it, for the message when it runs eagerly.
    """

    def __init__(self, variables, rules_of, name="kerastroke"):
        self.variables = list(variables)
        self.groups = _grouped(self.variables, rules_of)
        self.rules = rules_of(self.variables[0]) if self.variables else []
        plain = [
            (index, rule) for group in self.groups for index, rule in enumerate(group.rules) if not traceable(rule)
        ]
        self.batched = not plain
        self.compile = self.batched
        self.host = _on_host(self.groups)
        if plain:
            index, rule = plain[0]
            warnings.warn(
                f"{name}: rule {index} ({rule.selector!r}, {rule.mutator!r}) has a piece without a "
                "batched form (`select_batch` / `mutate_batch`), so its applications run eagerly, "
                "variable by variable, rather than as one compiled call.",
                stacklevel=4,
            )
        self._functions = {}

    def write(self, rule_amounts, seed_of, seed, changed=None, zeros=None, keeps=None, inputs=None):
        """Applies the rules at the given amounts; assigns only if every rule succeeds.

        Args:
            rule_amounts: `amounts(rules, step)`.
            seed_of: `variable -> int`, the seed of that variable's draws.
            seed: The callback's seed at this step, for global-scope selections.
            changed: Optional `(variables, bool masks) -> None`, called once
                every variable is assigned, with the variables written and
                the entries of each that changed.
            zeros: Optional dict, given `{id(variable): entries exactly zero}`.
            keeps: Optional dict, given `{id(variable): persistence.keep_mask}`
                of every variable's value after the application, computed in
                the same call (a persistent callback holds its zeros with them).
            inputs: `{id(variable): {name: tensor}}`, what the selectors
                declare in their `inputs` (e.g. "gradient"), measured by the
                callback before the application.

        Returns:
            The number of entries that changed, over all variables.
        """
        writes = self.compute(
            rule_amounts, seed_of, seed, with_masks=changed is not None, with_keeps=keeps is not None, inputs=inputs
        )
        if zeros is not None:
            zeros.update({id(w.variable): w.zeros for w in writes})
        if keeps is not None:
            keeps.update({id(w.variable): w.keep for w in writes})
        commit([(w.variable, w.new, w.differs) for w in writes if w.changed], changed)
        return sum(w.changed for w in writes)

    def compute(self, rule_amounts, seed_of, seed, with_masks=False, with_keeps=False, inputs=None):
        """Every variable's new value, without assigning any.

        Returns:
            A list of `Write`s, one per variable: the new value, the number of
            entries changed, their mask (only `with_masks`), the number of
            entries exactly zero in the new value and the mask that holds
            them (only `with_keeps`).
        """
        if not self.variables:
            return []
        active = tuple("off" if not a else "full" if a == 1.0 else "part" for a in rule_amounts)
        _check_inputs(self.rules, active, inputs)
        group_seeds = [[seed_of(variable) for variable in group.variables] for group in self.groups]
        group_words = _group_words(group_seeds, active)
        if self.host and accel.host_takes(ranking="part" in active):
            outputs = _host_application(self.groups, active, rule_amounts, group_words, with_masks, with_keeps)
            return self._writes(outputs)
        names = tuple(sorted(next(iter(inputs.values())))) if inputs else ()
        variant = (active, with_masks, with_keeps, names)
        function = self._functions.get(variant)
        if function is None:
            function = _function(self.groups, variant, self.batched, self.compile)
            self._functions[variant] = function
        values = [_compiled_input(group.variables) for group in self.groups]
        keys = [_tensors(words) for words in group_words]
        amounts_in = np.asarray([float(a) for a in rule_amounts], dtype=picking.wide_float())
        extras = [{name: [inputs[id(v)][name] for v in group.variables] for name in names} for group in self.groups]
        global_keys = _tensors(_piece_words(hashing.words_of([seeds.derive(seed, "global")]), active))
        arguments = (values, keys, amounts_in, global_keys, extras)
        if self.batched:
            outputs = function(*arguments)
        else:
            outputs = function(*arguments, (group_seeds, seeds.derive(seed, "global")))
        return self._writes(outputs)

    def _writes(self, outputs):
        """Each group's stacked outputs as one `Write` per variable; a NaN or
        infinite value a mutator gave a selected entry is a ValueError."""
        writes = []
        for group, (news, changed, zero_counts, bad, differs, keeps) in zip(self.groups, outputs):
            # Read only: the CPU path's NumPy counts need no copy through Keras.
            changed, zero_counts, bad = (
                x if isinstance(x, np.ndarray) else arrays.to_numpy(x) for x in (changed, zero_counts, bad)
            )
            # Each group comes back stacked, or row by row (`accel.as_outputs`), and split here.
            news = accel.rows(news)
            differs = accel.rows(differs) if differs is not None else None
            keeps = accel.rows(keeps) if keeps is not None else None
            if bad.any():
                index, row = (int(i[0]) for i in np.nonzero(bad))
                raise ValueError(
                    f"{_describe(index, group.rules[index], 'mutator', group.variables[row].path)}: it gave "
                    f"{int(bad[index, row])} selected entries a NaN or infinite value; nothing was written. "
                    "New values must be finite."
                )
            for row, variable in enumerate(group.variables):
                writes.append(Write(
                    variable,
                    news[row],
                    int(changed[row]),
                    differs[row] if differs is not None else None,
                    int(zero_counts[row]),
                    keeps[row] if keeps is not None else None,
                ))
        return writes


def _host_application(groups, active, rule_amounts, group_words, with_masks, with_keeps):
    """`_application`'s outputs computed on the host by the pieces' host forms.

    The same steps in the same order, with the same keys (`group_words`,
    which the compiled call gets as tensors), on float32 NumPy batches: read
    from the variables (into the reader's reused buffer, never written to
    and never written out), each rule's selection and new values, then the
    entries changed, the zeros and the masks holding them in one pass
    (`accel.host.summary`), which also counts a single rule's non-finite
    values (with several rules, each is counted after its mutation).
    """
    outputs = []
    for group, keys in zip(groups, group_words):
        if group.reader is None:
            group.reader = accel.host_reader(group.variables)
        original = group.reader()
        current = original
        bad = []
        indices = [index for index, state in enumerate(active) if state != "off"]
        for index in indices:
            amount = 1.0 if active[index] == "full" else float(rule_amounts[index])
            rule = group.rules[index]
            mask = rule.selector.select_host(current, amount, keys[f"{index} select"])
            new = rule.mutator.mutate_host(current, mask, keys[f"{index} mutate"])
            if len(indices) > 1:  # one rule's are counted with the summary, in its pass
                bad.append(host.introduced(mask, new, current))
            current = new
        if np.may_share_memory(current, original):  # the reader's buffer is never written out
            current = np.array(current)
        changed, zero_count, differs, keeps, introduced = host.summary(
            current, original, with_masks, with_keeps, mask if len(indices) == 1 else None
        )
        if introduced is not None:
            bad.append(introduced)
        outputs.append((
            current,
            changed,
            zero_count,
            np.stack(bad) if bad else np.zeros((0, len(group.variables)), np.int64),
            differs,
            keeps,
        ))
    return outputs


def commit(assignments, changed=None):
    """Assigns new values computed beforehand, then reports what changed.

    The last step of every write: call it only once every new value of the
    application exists, so that a failure before it changes nothing.

    Args:
        assignments: `(variable, new value, changed mask or None)` triples.
        changed: Optional `(variables, masks) -> None`, called once every
            variable is assigned, with the variables written and the mask of
            each one's changed entries (optimizer state resets and moving
            averages follow it).
    """
    accel.assign([variable for variable, _, _ in assignments], [new for _, new, _ in assignments])
    if changed is not None and assignments:
        changed([variable for variable, _, _ in assignments], [mask for _, _, mask in assignments])


def _check_inputs(rules, active, inputs):
    """Every input an active rule's selector declares was measured."""
    for index, (rule, state) in enumerate(zip(rules, active)):
        declared = getattr(rule.selector, "inputs", ())
        if state == "off" or not declared:
            continue
        measured = next(iter(inputs.values()), {}) if inputs else {}
        missing = [name for name in declared if name not in measured]
        if missing:
            raise ValueError(
                f"{_describe(index, rule, 'selector', '')}: it declares the inputs {missing}, and none "
                "was measured: give the callback a `probe=(x, y)` batch."
            )


def _piece_words(words, active):
    """The keys of every active rule's pieces as NumPy words,
    `{"<rule> select": keys, "<rule> mutate": keys}`, derived on the host
    (`hashing.derive_on_host`, the same words as `hashing.derive`)."""
    return {
        f"{index} {piece}": hashing.derive_on_host(hashing.derive_on_host(words, f"rule {index}"), piece)
        for index, state in enumerate(active)
        if state != "off"
        for piece in ("select", "mutate")
    }


def _group_words(group_seeds, active):
    """`_piece_words` of each group's variable seeds, derived for all groups at
    once (a derivation costs the same for one variable as for hundreds)."""
    derived = _piece_words(hashing.words_of([s for seeds_ in group_seeds for s in seeds_]), active)
    bounds = np.cumsum([0] + [len(seeds_) for seeds_ in group_seeds]).tolist()
    return [{name: keys[start:stop] for name, keys in derived.items()} for start, stop in zip(bounds, bounds[1:])]


def _compiled_input(variables):
    """A group's values as the compiled application takes them: stacked
    already where the backend stacks them cheaper outside the call
    (`accel.stacked_values`: on JAX, a program with one input per variable
    compiles for longer), else the list of the variables' values."""
    stacked = accel.stacked_values(variables)
    return [variable.value for variable in variables] if stacked is None else stacked


def _tensors(words):
    """Piece keys as tensors, the compiled application's inputs: traced, the
    derivations were a large part of each compiled program."""
    return {name: ops.convert_to_tensor(keys) for name, keys in words.items()}


def _plain_seed(variable_seed, index, piece):
    return seeds.derive(variable_seed, "rule", index, piece)


def _select(rule, index, current, amount, keys, group_seeds, where, extras=None):
    """The rule's selection on a batch: batched, or row by row for a plain selector.

    A selector that declares `inputs` (e.g. `("gradient",)`) gets each as a
    keyword argument of the batch's shape.
    """
    declared = {name: extras[name] for name in getattr(rule.selector, "inputs", ())}
    select_batch = _batched(rule.selector, "select_batch")
    if select_batch is not None:
        return select_batch(current, amount, keys, **declared)
    masks = []
    for row, (variable_seed, path) in enumerate(zip(group_seeds, where)):
        row_inputs = {name: value[row] for name, value in declared.items()}
        try:
            mask = rule.selector(
                current[row], float(amount), _plain_seed(variable_seed, index, "select"), **row_inputs
            )
        except Exception as exc:
            _reraise_with_context(exc, _describe(index, rule, "selector", path))
        masks.append(_checked(mask, tuple(current.shape[1:]), "bool", index, rule, "selector", path))
    return ops.stack(masks)


def _mutate(rule, index, current, mask, keys, group_seeds, where):
    """The rule's new values on a batch; entries outside `mask` keep their bits."""
    mutate_batch = _batched(rule.mutator, "mutate_batch")
    if mutate_batch is not None:
        return mutate_batch(current, mask, keys)
    news = []
    dtype = arrays.dtype_name(current)
    for row, (variable_seed, path) in enumerate(zip(group_seeds, where)):
        try:
            new = rule.mutator(current[row], mask[row], _plain_seed(variable_seed, index, "mutate"))
        except Exception as exc:
            _reraise_with_context(exc, _describe(index, rule, "mutator", path))
        new = _checked(new, tuple(current.shape[1:]), dtype, index, rule, "mutator", path)
        news.append(arrays.merge(mask[row], new, current[row]))
    return ops.stack(news)


def _together(tensors):
    """Batches of several groups as one row: every entry, flat, in the widest float."""
    wide = "float64" if any(arrays.dtype_name(t) == "float64" for t in tensors) else "float32"
    return ops.expand_dims(ops.concatenate([ops.reshape(ops.cast(t, wide), (-1,)) for t in tensors]), 0)


def _global_masks(rule, index, currents, amount, keys, global_seed, extras):
    """A global-scope selection: once over every group's entries, split back per group."""
    everything = _together(currents)
    together = {name: _together([extra[name] for extra in extras]) for name in getattr(rule.selector, "inputs", ())}
    if keys is not None:
        mask = _select(rule, index, everything, amount, keys, None, None, together)
    else:
        mask = _select(rule, index, everything, amount, None, [global_seed], ["all targeted variables"], together)
    masks, offset = [], 0
    for current in currents:
        size = math.prod(current.shape)
        masks.append(ops.reshape(mask[0, offset:offset + size], current.shape))
        offset += size
    return masks


def _function(groups, variant, batched, compile_):
    """The application function for these groups: compiled functions are shared
    by every plan of the same structure (shapes, dtypes, rules, constraint), so
    a second callback or model alike costs no second compilation."""
    if not compile_:
        return accel.eager(_application(groups, variant, batched))
    structure = tuple(
        (len(g.variables), g.shape, g.dtype, repr(g.rules), None if g.constraint is None else id(g.constraint))
        for g in groups
    )
    key = (structure, variant)
    function = _COMPILED.pop(key, None)
    if function is None:
        function = accel.compile(_application(groups, variant, batched))
    _COMPILED[key] = function
    while len(_COMPILED) > _COMPILED_KEPT:
        _COMPILED.popitem(last=False)
    return function


# Compiled application functions by structure, least recently used first.
_COMPILED = collections.OrderedDict()
_COMPILED_KEPT = 64


def _application(groups, variant, batched):
    """The function that computes one application over every group.

    `variant` is fixed per function, everything else is an input:
    `(active, with_masks, with_keeps, names)`, where `active[i]` is "off",
    "full" (amount 1: a selector takes every eligible entry without
    ranking) or "part" for rule i, the two flags say whether the changed
    entries' masks and the zeros' hold masks are returned, and `names` are
    the measured inputs the selectors declare.
    """
    active, with_masks, with_keeps, _ = variant
    paths = [[variable.path for variable in group.variables] for group in groups]

    def application(values, keys, amounts, global_keys, extras, plain=None):
        group_seeds, global_seed = plain if plain is not None else (None, None)
        extras = [{name: ops.stack(list(tensors)) for name, tensors in extra.items()} for extra in extras]
        originals = [
            ops.stack([ops.convert_to_tensor(v) for v in group_values]) if isinstance(group_values, list)
            else group_values  # stacked before the call (`_compiled_input`)
            for group_values in values
        ]
        currents = list(originals)
        bad = [[] for _ in groups]
        for index, state in enumerate(active):
            if state == "off":
                continue
            amount = 1.0 if state == "full" else amounts[index]
            rules = [group.rules[index] for group in groups]
            masks = [None] * len(groups)
            if rules[0].scope == "global":
                masks = _global_masks(
                    rules[0], index, currents, amount,
                    global_keys[f"{index} select"] if batched else None, global_seed, extras,
                )
            for g, (rule, current) in enumerate(zip(rules, currents)):
                plain = None if batched else group_seeds[g]
                if masks[g] is None:
                    masks[g] = _select(rule, index, current, amount, keys[g][f"{index} select"],
                                       plain, paths[g], extras[g])
                new = _mutate(rule, index, current, masks[g], keys[g][f"{index} mutate"], plain, paths[g])
                introduced = ops.logical_and(ops.logical_not(ops.isfinite(new)), ops.isfinite(current))
                bad[g].append(ops.logical_and(masks[g], introduced))
                currents[g] = new
        outputs = []
        for g, (group, original, current) in enumerate(zip(groups, originals, currents)):
            if group.constraint is not None:
                current = ops.expand_dims(_constrained(group.constraint, paths[g][0], current[0]), 0)
            zeros = arrays.is_zero(current)  # one pass, for the changes, the count and the holds
            differs = _differs(current, original, zeros)
            rows = len(group.variables)
            # Every count of the group at once (one reduction on JAX, see `accel.counts`).
            changed, zero_count, *bad_counts = accel.counts([differs, zeros, *bad[g]])
            outputs.append((
                accel.as_outputs(current),
                changed,
                zero_count,
                ops.stack(bad_counts) if bad_counts else ops.zeros((0, rows), dtype="int32"),
                accel.as_outputs(differs) if with_masks else None,
                accel.as_outputs(persistence.keep_mask(current, zeros)) if with_keeps else None,
            ))
        return outputs

    return application


def apply_rules(weights, rules, step, seed, where="", rule_amounts=None):
    """Applies `rules` in order to one weight tensor; pure.

    The computation `Plan` runs for one variable: the same draws, bit for
    bit, as an application that gives this tensor the seed `seed`.

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
    variable = _Value(original, where)
    plan = Plan.__new__(Plan)
    plan.variables, plan.rules, plan._functions = [variable], list(rules), {}
    plan.groups = [_Group(variable, plan.rules)]
    # Compiled like a callback's application (and sharing its compilation):
    # the same function, so the same bits.
    plan.batched = plan.compile = all(traceable(rule) for rule in plan.rules)
    plan.host = _on_host(plan.groups)
    (written,) = plan.compute(rule_amounts, lambda _: seed, seed)
    if not written.changed:
        return original, 0
    return arrays.tensor(written.new), written.changed  # a tensor also from the CPU path


class _Value:
    """A tensor standing in for a variable in `apply_rules`."""

    def __init__(self, value, path):
        self.value, self.path, self.constraint = value, path, None
        self.shape, self.dtype = value.shape, value.dtype
