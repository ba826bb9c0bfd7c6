"""The `train` command's flags, made from the config's fields: every field of `Config` that declares a
flag (`dkp.training.configs.option`) becomes one, with its help text, choices, check and group, and
the flags a user passed become the config's overrides. No list of field names lives anywhere else.

    add_config_flags(parser)            one flag per field, each defaulting to "not given"
    overrides(args)                     {field: value} of the flags given
    apply(config, changes)              the config with them, refusing a flag that would change nothing
"""
from __future__ import annotations

import argparse
from dataclasses import fields

from dkp.training.configs import Config

TYPES = {"int": int, "float": float, "str": str}


def flag_name(f):
    """The flag of config field `f`: its declared one, else --FIELD-NAME; None for a field without one."""
    declared = f.metadata.get("flag")
    if declared is False:
        return None
    return declared or "--" + f.name.replace("_", "-")


def _type(f):
    check = f.metadata.get("check")
    kind = TYPES.get(f.type if isinstance(f.type, str) else f.type.__name__, str)

    def parse(text):
        try:
            return check(text) if check else kind(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = kind.__name__
    return parse


def add_config_flags(parser, config_class=Config):
    """Add one flag per field of `config_class` to `parser` (argument groups by the fields' `group`)."""
    groups = {}
    for f in fields(config_class):
        name = flag_name(f)
        if name is None:
            continue
        meta = f.metadata
        group = meta.get("group", "training")
        target = parser if group == "training" else groups.setdefault(group, parser.add_argument_group(group))
        if f.type in ("bool", bool) and meta.get("negatable"):   # --FLAG sets True, --no-FLAG False
            target.add_argument(name, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=meta["help"] + " (default: the config's)")
            continue
        if f.type in ("bool", bool):    # a switch: the flag sets the opposite of the field's default
            target.add_argument(name, dest=f.name, action="store_const", const=not f.default, default=None,
                                help=meta["help"])
            continue
        target.add_argument(name, dest=f.name, type=_type(f), choices=meta.get("choices"), default=None,
                            metavar=meta.get("metavar"), help=meta["help"] + " (default: the config's)")


def overrides(args, config_class=Config):
    """{field: value} of every config flag given on the command line."""
    return {f.name: getattr(args, f.name) for f in fields(config_class)
            if flag_name(f) and getattr(args, f.name, None) is not None}


def apply(config, changes):
    """`config` with `changes`; a ValueError naming the flag for any change that would do nothing
    under the others (its field's `needs` does not hold in the result)."""
    out = config.with_(**changes)
    by_name = {f.name: f for f in fields(config)}
    for name in changes:
        needs = by_name[name].metadata.get("needs")
        if needs and not needs[0](out):
            raise ValueError(f"{flag_name(by_name[name])} has no effect here: {needs[1]}")
    return out
