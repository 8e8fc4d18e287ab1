"""The one place where weights are written.

`apply_rules` is pure: it runs a list of rules over one weight tensor and
returns the new tensor with the number of entries that changed. `write_rules`
does that for a Keras variable and assigns the result only once every rule has
succeeded, so a variable is never left half-written.
"""

import math

from keras import ops

from kerastroke.core import arrays, seeds


def _describe(index, rule, piece, where):
    place = f" on variable '{where}'" if where else ""
    return f"kerastroke: rule {index} ({piece}={getattr(rule, piece)!r}) failed{place}"


def _reraise_with_context(exc, message):
    if hasattr(exc, "add_note"):
        exc.add_note(message)
        raise exc
    raise RuntimeError(f"{message}: {exc}") from exc


def amounts(rules, step):
    """Each rule's amount at `step`, checked to be a float in [0, 1]."""
    result = []
    for index, rule in enumerate(rules):
        try:
            amount = rule.schedule(step)
        except Exception as exc:
            _reraise_with_context(exc, _describe(index, rule, "schedule", ""))
        try:
            amount = float(amount)
        except (TypeError, ValueError):
            amount = math.nan
        if not 0.0 <= amount <= 1.0:
            raise ValueError(
                f"kerastroke: rule {index}'s schedule {rule.schedule!r} returned "
                f"{amount!r} at step {step}; an amount must be a float in [0, 1]."
            )
        result.append(amount)
    return result


def _checked(result, reference, dtype, index, rule, piece, where):
    result = arrays.tensor(result)
    problems = []
    if tuple(ops.shape(result)) != tuple(ops.shape(reference)):
        problems.append(f"shape {tuple(ops.shape(result))} instead of {tuple(ops.shape(reference))}")
    if arrays.dtype_name(result) != dtype:
        problems.append(f"dtype {arrays.dtype_name(result)} instead of {dtype}")
    if problems:
        raise ValueError(f"{_describe(index, rule, piece, where)}: it returned " + " and ".join(problems))
    return result


def apply_rules(weights, rules, step, seed, where="", rule_amounts=None):
    """Applies `rules` in order to one weight tensor; pure.

    Rule `i` draws with seeds derived from `(seed, i)`, so adding a rule never
    changes what the others draw.

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
    current = original
    touched = False
    for index, (rule, amount) in enumerate(zip(rules, rule_amounts)):
        if amount == 0.0:
            continue
        rule_seed = seeds.derive(seed, "rule", index)
        try:
            mask = rule.selector(current, amount, seeds.derive(rule_seed, "select"))
        except Exception as exc:
            _reraise_with_context(exc, _describe(index, rule, "selector", where))
        mask = _checked(mask, current, "bool", index, rule, "selector", where)
        try:
            new = rule.mutator(current, mask, seeds.derive(rule_seed, "mutate"))
        except Exception as exc:
            _reraise_with_context(exc, _describe(index, rule, "mutator", where))
        new = _checked(new, current, arrays.dtype_name(current), index, rule, "mutator", where)
        current = ops.where(mask, new, current)
        touched = True
    if not touched:
        return original, 0
    both_nan = ops.logical_and(ops.isnan(current), ops.isnan(original))
    differs = ops.logical_and(ops.not_equal(current, original), ops.logical_not(both_nan))
    return current, arrays.count(differs)


def write_rules(variable, rules, step, seed, rule_amounts=None):
    """Applies `rules` to a Keras variable and assigns the result in one write.

    Returns:
        The number of entries that changed.
    """
    new, changed = apply_rules(
        variable.value, rules, step, seed, where=variable.path, rule_amounts=rule_amounts
    )
    if changed:
        variable.assign(new)
    return changed
