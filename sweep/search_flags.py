"""The capacity search's command-line flags, declared once for the sweep and `//loadgen:capacity`."""

from __future__ import annotations

from typing import Any

import click

from formats.results import searches_words
from formats.units import UnitError, parse_duration, parse_fraction
from sweep.plan import SearchOptions, expected_probes, plan_seconds

_DEFAULTS = SearchOptions()


def _fraction(ctx, param, value):
    if value is None:
        return None
    try:
        return parse_fraction(value)
    except UnitError as err:
        raise click.BadParameter(str(err)) from None


def _seconds(ctx, param, value):
    if value is None:
        return None
    try:
        return round(parse_duration(value, positive=True))
    except UnitError as err:
        raise click.BadParameter(str(err)) from None


# flag -> (SearchOptions field, click option kwargs)
FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--repeats": ("repeats", {"type": click.IntRange(min=1), "help": "Independent searches per Config at least "
                              f"(default {_DEFAULTS.repeats}); the capacity pools all their probes, with a 95% "
                              "interval."}),
    "--max-repeats": ("max_repeats", {"type": click.IntRange(min=1), "help": "More searches, one at a time, up to "
                                      "this many, for a Config whose interval is still wider than --precision "
                                      f"(default {_DEFAULTS.max_repeats}; at least --repeats)."}),
    "--precision": ("precision", {"callback": _fraction, "help": "Target half-width of a capacity's 95% interval "
                                  f"(default {_DEFAULTS.precision:.0%}); 0: exactly --repeats searches."}),
    "--resolution": ("resolution", {"callback": _fraction, "help": "Stop bisecting when lowest FAIL / highest "
                                    f"PASS <= 1 + this (default {_DEFAULTS.resolution:.0%})."}),
    "--confidence": ("confidence", {"callback": _fraction, "help": "Confidence of each probe's verdict "
                                    f"(default {_DEFAULTS.confidence:.0%})."}),
    "--probe-max": ("max_probe_s", {"callback": _seconds, "help": "Longest probe; an undecided probe is then "
                                    f"decided on its point estimate (default {_DEFAULTS.max_probe_s}s)."}),
    "--search-seed": ("seed", {"type": int, "help": "Seed of the probes' arrivals and of the interleaving "
                               f"order (default {_DEFAULTS.seed})."}),
}


def search_flags(command):
    """Adds the search's flags to a click command (values: ``pop_search_flags``)."""
    for flag, (field, kwargs) in reversed(FLAGS.items()):
        command = click.option(flag, f"search_{field}", default=None, **kwargs)(command)
    return command


def pop_search_flags(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The search flags' values by SearchOptions field (None: not given), removed from ``kwargs``."""
    return {field: kwargs.pop(f"search_{field}") for field, _ in FLAGS.values()}


def method_text(method: str, options: SearchOptions, configs: int, given_up: list[str] | tuple[str, ...]) -> str:
    """One line saying how Configs will be measured (and, for the search, about how long it takes)."""
    if method == "ramp":
        return "method: ramp (the seed study's method: one run of the spec's load profile per Config)"
    repeats = searches_words(options.repeats, options.most_repeats, options.precision)
    text = (f"method: capacity search, {repeats}, resolution "
            f"{options.resolution:.0%}, confidence {options.confidence:.0%}, probes "
            f"{options.min_probe_s}-{options.max_probe_s} s (~{expected_probes(options):.0f} per search): "
            f"up to about {plan_seconds(configs, options) / 60:.0f} min of probing")
    if given_up:
        text += "; to fit --budget: " + ", ".join(given_up)
    return text
