"""Targets, the markdown tables and the JSON file, all from the measured numbers."""

import json
import os
from pathlib import Path

# Issue 12's targets.
FIT_LIMIT = 1.10
APPLY_TARGET = "one application (and the read-back) at most 10 x memcpy + 20 us per targeted variable"
FIRST_TARGET = "first application of a callback (tracing, compiling) under 2 s"
FIT_TARGET = f"persistent MagnitudePruning (frequency=100 in the full run) at most {FIT_LIMIT:.2f}x plain fit"
TFMOT_TARGET = "MagnitudePruning's fit overhead below tfmot's prune_low_magnitude's"
LABELS = {
    "MagnitudePruning": "MagnitudePruning(0.5)",
    "SET": "SET(0.5, 0.3)",
    "ShrinkPerturb": "ShrinkPerturb(0.4, 0.1)",
}


def format_ms(seconds):
    """Seconds as milliseconds (or microseconds, below 0.1 ms) with 2 to 3 significant digits."""
    if seconds is None:
        return "-"
    milliseconds = seconds * 1e3
    if milliseconds >= 100:
        return f"{milliseconds:.0f} ms"
    if milliseconds >= 10:
        return f"{milliseconds:.1f} ms"
    if milliseconds >= 0.1:
        return f"{milliseconds:.2f} ms"
    return f"{milliseconds * 1e3:.0f} us"


def _s(seconds):
    return "-" if seconds is None else f"{seconds:.2f} s"


def format_io(yardstick):
    """The I/O-alone time, or "-" where it was not measured (no CPU path, or an older run)."""
    return format_ms(yardstick["io"]["min_s"]) if "io" in yardstick else "-"


def _x(value, digits=1):
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}x"
    return f"{value:.{digits}f}x"


def _pct(value):
    return "-" if value is None else f"{value * 100:+.1f}%"


def _mib(value):
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def _ok(section):
    return section is not None and "error" not in section


def _yes(met):
    return {True: "yes", False: "**no**", None: "-"}[met]


# -- verdicts -----------------------------------------------------------------------------


def _apply_verdicts(apply):
    entries = [(model, preset, entry) for model, row in apply["models"].items() if "presets" in row
               for preset, entry in row["presets"].items() if "error" not in entry]
    failed = [(model, preset) for model, row in apply["models"].items()
              for preset, entry in row.get("presets", {}).items() if "error" in entry]
    failed += [(model, None) for model, row in apply["models"].items() if "error" in row]
    if not entries:
        return None, None
    worst = max(entries, key=lambda item: item[2]["over_budget"])
    slowest_first = max(entries, key=lambda item: item[2]["first_s"])
    met = sum(entry["met"] for _, _, entry in entries)
    application = {
        "target": APPLY_TARGET,
        "met_count": met,
        "measured": len(entries),
        "failed": [list(item) for item in failed],
        "worst": {"model": worst[0], "preset": worst[1], "over_budget": worst[2]["over_budget"],
                  "ms": worst[2]["min_s"] * 1e3, "ratio_to_memcpy": worst[2]["ratio_to_memcpy"]},
        "met": met == len(entries) and not failed,
    }
    first = {
        "target": FIRST_TARGET,
        "met_count": sum(entry["first_met"] for _, _, entry in entries),
        "measured": len(entries),
        "worst": {"model": slowest_first[0], "preset": slowest_first[1], "s": slowest_first[2]["first_s"]},
        "met": all(entry["first_met"] for _, _, entry in entries) and not failed,
    }
    return application, first


def _fit_verdicts(fit, tfmot):
    configs = fit["configs"]
    verdicts = {}
    for name in ("MagnitudePruning", "Stroke"):
        if name not in configs:
            continue
        row = configs[name]
        wall, cpu = 1.0 + row["overhead"], 1.0 + row["cpu_overhead"]
        met = wall <= FIT_LIMIT
        verdict = {"target": f"{name} every {fit['frequency']} steps at most {FIT_LIMIT:.2f}x plain fit",
                   "ratio": wall, "cpu_ratio": cpu, "met": met}
        if met != (cpu <= FIT_LIMIT):
            # Wall-clock epochs on a shared machine: where CPU time says otherwise, leave it open.
            verdict["met"] = None
        verdicts[name] = verdict
    if "MagnitudePruning" in configs and _ok(tfmot):
        ours = configs["MagnitudePruning"]["overhead"]
        theirs = tfmot["configs"]["prune_low_magnitude"]["overhead"]
        verdicts["tfmot"] = {"target": TFMOT_TARGET, "ours": ours, "tfmot": theirs, "met": ours < theirs}
    return verdicts


def targets(results):
    """Per backend: the verdicts of issue 12's targets from the measured numbers."""
    verdicts = {}
    for backend, result in results.get("backends", {}).items():
        entry = {}
        if _ok(result) and _ok(result.get("apply")):
            entry["application"], entry["first"] = _apply_verdicts(result["apply"])
        if _ok(result) and _ok(result.get("fit")):
            entry["fit"] = _fit_verdicts(result["fit"], results.get("tfmot"))
        verdicts[backend] = entry
    return verdicts


# -- markdown -----------------------------------------------------------------------------


def _load(values):
    return " ".join(map(str, values or [])) or "-"


def _header(results):
    machine = results["machine"]
    versions = machine["versions"]
    library = f"kerastroke {machine['kerastroke']} at git {machine['git_commit']}"
    if machine.get("library_uncommitted_changes"):
        library += " with uncommitted library changes"
    software = ", ".join(f"{name} {versions[name]}" for name in ("keras", "tensorflow", "jax", "torch", "numpy")
                         if versions.get(name))
    lines = [
        f"# kerastroke benchmark ({results['mode']})", "",
        f"Run {results['started']} in {results['duration_s'] / 60:.1f} min on {machine['cpu']}, "
        f"{machine['usable_cores']} cores, {machine['memory_gib']:.0f} GiB; Python {machine['python']}, "
        f"{software}; {library}. Command: `{' '.join(results.get('command', []))}`.",
        "",
        f"Load average (1/5/15 min): at start {_load(results['load_start'])}, at end {_load(results['load_end'])}; "
        "per backend and section below. The machine is shared: a load above the core count means other "
        "processes ran during the measurement.",
        "",
    ]
    for backend, result in results["backends"].items():
        if "error" in result and "backend" not in result:
            lines.append(f"- {backend}: failed: {result['error']}")
            continue
        info = result["backend"]
        loads = "; ".join(f"{key} {_load(result[key].get('load_at_start'))}"
                          for key in ("apply", "fit", "original", "memory") if key in result)
        threads = {"tensorflow": f"intra-op threads {info.get('intra_op_threads')}",
                   "torch": f"threads {info.get('threads')}",
                   "jax": f"x64 {info.get('x64')}"}.get(info["keras_backend"], "")
        lines.append(f"- {backend} {info.get('version')} ({threads}): {result['duration_s']:.0f} s; load at start "
                     f"of {loads}")
    if "tfmot" in results:
        lines.append(f"- tfmot: {results['tfmot'].get('section_s', 0):.0f} s in its own environment")
    lines.append("")
    if results["mode"] == "quick":
        lines += ["**Quick run** (`--quick`): small sizes and few repeats, to check the harness; the targets "
                  "are for the full run's sizes.", ""]
    return lines


def _targets_table(results):
    verdicts = results.get("targets") or {}
    if not verdicts:
        return []
    lines = ["## Targets (issue 12)", "",
             f"| backend | {APPLY_TARGET} | {FIRST_TARGET} | {FIT_TARGET} | {TFMOT_TARGET} |",
             "| --- | --- | --- | --- | --- |"]
    for backend, entry in verdicts.items():
        cells = []
        application = entry.get("application")
        if application:
            worst = application["worst"]
            text = (f"{application['met_count']} of {application['measured']} met; worst "
                    f"{LABELS.get(worst['preset'], worst['preset'])} on {worst['model']}: "
                    f"{_x(worst['over_budget'])} the limit ({_x(worst['ratio_to_memcpy'])} memcpy)")
            if application["failed"]:
                text += f"; {len(application['failed'])} failed"
            cells.append(f"{_yes(application['met'])}: {text}")
        else:
            cells.append("-")
        first = entry.get("first")
        if first:
            worst = first["worst"]
            cells.append(f"{_yes(first['met'])}: {first['met_count']} of {first['measured']}; slowest "
                         f"{LABELS.get(worst['preset'], worst['preset'])} on {worst['model']}, {_s(worst['s'])}")
        else:
            cells.append("-")
        fit = entry.get("fit", {})
        pruning = fit.get("MagnitudePruning")
        if pruning:
            met = "unclear (wall clock and CPU time disagree)" if pruning["met"] is None else _yes(pruning["met"])
            cells.append(f"{met}: {pruning['ratio']:.2f}x (CPU time {pruning['cpu_ratio']:.2f}x)")
        else:
            cells.append("-")
        versus = fit.get("tfmot")
        cells.append(f"{_yes(versus['met'])}: {_pct(versus['ours'])} against {_pct(versus['tfmot'])}"
                     if versus else "-")
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    return lines + [""]


def _apply_tables(results):
    lines = []
    for backend, result in results["backends"].items():
        apply = result.get("apply") if isinstance(result, dict) else None
        if apply is None:
            continue
        if "error" in apply:
            lines += [f"## One application, {backend}: not measured", "", "```", apply["error"], "```", ""]
            continue
        presets = []
        for row in apply["models"].values():
            for preset in row.get("presets", {}):
                if preset not in presets:
                    presets.append(preset)
        lines += [
            f"## One application, {backend}", "",
            "Each cell: the minimum time of `callback.apply(step)` followed by a compiled read-back of every "
            "targeted variable, its ratio to one `np.copyto` of as many entries, and whether it is within "
            "10 x memcpy + 20 us per targeted variable (the limit column: kernels; with biases, for "
            "ShrinkPerturb). The read-back alone is part of every cell. The I/O column: an application "
            "that computes nothing on the CPU path (each group read to the host, copied once, written "
            "back, then the read-back): the least an application on that path costs here.",
            "",
            "| model | targeted | memcpy | read-back | I/O alone | limit | "
            + " | ".join(LABELS.get(p, p) for p in presets) + " |",
            "| --- | --- | --- | --- | --- | --- | " + " | ".join("---" for _ in presets) + " |",
        ]
        firsts = []
        for name, row in apply["models"].items():
            if "error" in row:
                lines.append(f"| {name}: {row['description']} | failed: {row['error'][:200]} |")
                continue
            kernels, both = row["targets"]["kernels"], row["targets"]["kernels and biases"]
            cells = []
            for preset in presets:
                entry = row["presets"].get(preset)
                if entry is None:
                    cells.append("")
                elif "error" in entry:
                    cells.append(f"failed: {entry['error'][:80]}")
                else:
                    text = f"{format_ms(entry['min_s'])} ({_x(entry['ratio_to_memcpy'])})"
                    cells.append(f"{text} yes" if entry["met"] else f"**{text} no**")
            targeted = (f"{kernels['variables']} kernels ({kernels['entries']:,}); "
                        f"+{both['variables'] - kernels['variables']} biases (+{both['entries'] - kernels['entries']:,})")
            lines.append(
                f"| {name}: {row['description']} | {targeted} | {format_ms(kernels['memcpy']['min_s'])}; "
                f"{format_ms(both['memcpy']['min_s'])} | {format_ms(kernels['read_back']['min_s'])}; "
                f"{format_ms(both['read_back']['min_s'])} | {format_io(kernels)}; {format_io(both)} | "
                f"{format_ms(kernels['budget_s'])}; {format_ms(both['budget_s'])} | "
                + " | ".join(cells) + " |")
            firsts.append((name, row))
        lines += ["", f"First application of each callback on {backend} (tracing and compiling included; "
                      "target under 2 s). The first model's first preset also pays the process's one-time "
                      "costs.", "",
                  "| model | " + " | ".join(LABELS.get(p, p) for p in presets) + " |",
                  "| --- | " + " | ".join("---" for _ in presets) + " |"]
        for name, row in firsts:
            cells = []
            for preset in presets:
                entry = row["presets"].get(preset)
                if entry is None or "error" in entry:
                    cells.append("-")
                else:
                    cells.append(_s(entry["first_s"]) if entry["first_met"] else f"**{_s(entry['first_s'])}**")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        stepped = [(name, row) for name, row in firsts if "step_batch_size" in row]
        if stepped:
            lines += [f"What an application leaves to the next training step on {backend}: one "
                      "`train_on_batch` (batch of " f"{stepped[0][1]['step_batch_size']}, mse, Adam) after an "
                      "application, minus one after a plain restore of the same weights, the two in alternation "
                      "(minima; the plain step's range over the presets in the second column; a negative "
                      "difference is noise). Not part of the target, which is on the application alone.", "",
                      "| model | plain step | " + " | ".join(LABELS.get(p, p) for p in presets) + " |",
                      "| --- | --- | " + " | ".join("---" for _ in presets) + " |"]
            for name, row in stepped:
                cells = []
                for preset in presets:
                    entry = row["presets"].get(preset)
                    cells.append("-" if entry is None or "next_step" not in entry
                                 else f"{entry['next_step']['extra_s'] * 1e3:+.1f} ms")
                plain = [entry["next_step"]["plain"]["min_s"] for entry in row["presets"].values()
                         if "next_step" in entry]
                span = f"{format_ms(min(plain))} to {format_ms(max(plain))}" if plain else "-"
                lines.append(f"| {name} | {span} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def _fit_table(results):
    rows, described = [], None
    for backend, result in results["backends"].items():
        fit = result.get("fit") if isinstance(result, dict) else None
        if fit is None:
            continue
        if "error" in fit:
            rows.append(f"| {backend} | not measured: {fit['error'][:200]} | | | | | | |")
            continue
        described = described or fit
        for name, row in fit["configs"].items():
            if name == "baseline":
                rows.append(f"| {backend} | plain fit | {row['min_epoch_s']:.2f} s | | | | "
                            f"{_pct(row.get('spread'))} | |")
                continue
            label = {"MagnitudePruning": "MagnitudePruning(polynomial 0 to "
                                         f"{fit['schedule']['final']}, frequency={fit['frequency']})",
                     "Stroke": f"Stroke(frequency={fit['frequency']})"}.get(name, name)
            rows.append(f"| {backend} | {label} | {row['min_epoch_s']:.2f} s | {1 + row['overhead']:.3f}x | "
                        f"{1 + row['cpu_overhead']:.3f}x | {format_ms(row['callback_s_per_epoch'])} | | "
                        f"{row['sparsity_after']:.1%} |")
    tfmot = results.get("tfmot")
    if tfmot is not None:
        if "error" in tfmot:
            rows.append("| tf_keras | tfmot: not measured (see below) | | | | | | |")
        else:
            versions = tfmot["versions"]
            base, pruned = tfmot["configs"]["baseline"], tfmot["configs"]["prune_low_magnitude"]
            rows.append(f"| tf_keras {versions['tf_keras']} | plain fit | {base['min_epoch_s']:.2f} s | | | | | |")
            rows.append(f"| tf_keras {versions['tf_keras']} | tfmot {versions['tensorflow_model_optimization']} "
                        f"prune_low_magnitude(PolynomialDecay, frequency={tfmot['spec']['frequency']}) | "
                        f"{pruned['min_epoch_s']:.2f} s | {1 + pruned['overhead']:.3f}x | "
                        f"{1 + pruned['cpu_overhead']:.3f}x | | | {tfmot['sparsity_after']:.1%} |")
    if not rows:
        return []
    lines = ["## Fit time: callbacks every 100 steps against plain fit", ""]
    if described:
        model, data = described["model"], described["data"]
        lines += [
            f"MLP {'-'.join(map(str, model['layers'][:2]))}-...-{model['layers'][-1]} "
            f"({len(model['layers']) - 2} hidden layers of {model['layers'][1]}, {model['kernels']} kernels, "
            f"{model['kernel_weights']:,} kernel weights), Adam, {data['samples']:,} generated samples, "
            f"batch {data['batch_size']} ({data['steps_per_epoch']} steps per epoch). Sparsity ramp: "
            f"polynomial (power 3) from 0 to {described['schedule']['final']} over steps 0 to "
            f"{described['schedule']['end']} (the whole run). After {described['warmup_epochs']} warm-up "
            f"epoch(s) each configuration trained {described['timed_epochs']} timed epochs, taking turns "
            "epoch by epoch; an epoch is timed from before every callback's on_epoch_begin to after every "
            "on_epoch_end. x plain fit: median over turns of (epoch / plain epoch of the same turn), in "
            "wall-clock (judged) and process CPU time. 'in callbacks' is the time inside the callback's "
            "hooks per epoch (the applications, without what they leave to the train steps).",
            "",
        ]
    lines += ["| backend | callbacks | fastest epoch | x plain fit | CPU time | in callbacks per epoch | "
              "plain epochs' spread | kernel sparsity after |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"] + rows + [""]
    if tfmot is not None and "error" in tfmot:
        lines += ["tfmot could not be measured:", "", "```", tfmot["error"].strip(), "```", ""]
    elif tfmot is not None and tfmot.get("keras3_model_refused_with"):
        lines += [f"Given a Keras 3 model, tfmot's prune_low_magnitude raises "
                  f"`{tfmot['keras3_model_refused_with'][:200]}`", ""]
    return lines


def _original_tables(results):
    lines = []
    for backend, result in results["backends"].items():
        original = result.get("original") if isinstance(result, dict) else None
        if original is None:
            continue
        if "error" in original:
            lines += [f"## Against kerastroke 2.1.1, {backend}: not measured", "", "```", original["error"], "```", ""]
            continue
        side = original["side"]
        lines += [
            f"## Against kerastroke {original['version']}, {backend}: one application to a {side}x{side} "
            "Dense kernel", "",
            f"| preset | kerastroke {original['version']} | now | speed-up | changed by {original['version']} "
            "| changed now |", "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, row in original["presets"].items():
            if "error" in row:
                lines.append(f"| {name} | failed: {row['error']} | {format_ms(row['kerastroke']['min_s'])} | - | - | - |")
                continue
            lines.append(f"| {name} | {format_ms(row['original']['min_s'])} | {format_ms(row['kerastroke']['min_s'])} | "
                         f"{_x(row['speedup'], 0)} | {row['original_changed_fraction']:.2%} | "
                         f"{row['kerastroke_changed_fraction']:.2%} |")
        lines.append("")
    return lines


def _memory_tables(results):
    lines = []
    for backend, result in results["backends"].items():
        memory = result.get("memory") if isinstance(result, dict) else None
        if memory is None:
            continue
        if "error" in memory:
            lines += [f"## Peak memory, {backend}: not measured", "", "```", memory["error"], "```", ""]
            continue
        side = memory["side"]
        lines += [f"## Peak extra memory of one application to a {side}x{side} kernel, {backend} "
                  "(fresh process per preset)", "",
                  "| preset | peak extra RSS | kernel | ratio | method |", "| --- | --- | --- | --- | --- |"]
        for name, row in memory["presets"].items():
            if "error" in row:
                lines.append(f"| {name} | failed | - | - | {row['error'][-120:]} |")
                continue
            lines.append(f"| {name} | {_mib(row['extra_bytes'])} | {_mib(row['largest_tensor_bytes'])} | "
                         f"{_x(row['ratio'], 2)} | {row['method']} |")
        lines.append("")
    return lines


def markdown(results):
    lines = _header(results) + _targets_table(results)
    lines += _apply_tables(results) + _fit_table(results) + _original_tables(results) + _memory_tables(results)
    for note in results.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines).rstrip() + "\n"


def write(results, out_dir, stem):
    """Writes `<stem>.json` and `<stem>.md` in `out_dir` (each via a .tmp file, then renamed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".json", json.dumps(results, indent=1, sort_keys=False) + "\n"),
                         (".md", markdown(results))):
        path = out_dir / f"{stem}{suffix}"
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text)
        os.replace(temporary, path)
        paths.append(path)
    return paths
