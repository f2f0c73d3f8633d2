"""Options classes (:mod:`vp3d_ros.core.options`) as command-line flags, and back.

A field ``max_gap_s`` is the flag ``--max-gap-s``; booleans get ``--x/--no-x``; tuples of
integers are written ``3,3,3``; fields with choices take one of them (``--causal`` alone means
``true``). ``aliases`` keeps older flag names working (``--layout`` for ``--input-layout``).
"""
from __future__ import annotations

import argparse
from typing import Dict, Iterable, Optional, Sequence

from ..core.options import fields_of


def int_list(text: str):
    """'3,3,3' (or '3 3 3') -> (3, 3, 3)."""
    try:
        return tuple(int(x) for x in text.replace(',', ' ').split())
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected integers like 3,3,3, got {text!r}')


def add_options(group, cls, defaults: Optional[Dict] = None, skip: Iterable[str] = (),
                aliases: Optional[Dict[str, Sequence[str]]] = None, note: str = '') -> None:
    """Add a flag for every field of ``cls`` (except ``skip``) to a parser or group."""
    defaults, aliases, skip = defaults or {}, aliases or {}, set(skip)
    for f in fields_of(cls):
        if f.name in skip:
            continue
        names = ['--' + f.name.replace('_', '-'), *aliases.get(f.name, ())]
        default = defaults.get(f.name, f.default)
        text = f.metadata['help'] + (f' ({note}default: %(default)s)' if note or default != ''
                                     else '')
        choices = f.metadata['choices']
        if isinstance(default, bool):
            group.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=default, help=text)
        elif isinstance(default, tuple):
            group.add_argument(*names, dest=f.name, type=int_list, default=default,
                               metavar='W,W,...', help=text)
        elif choices and 'true' in choices:
            group.add_argument(*names, dest=f.name, choices=choices, nargs='?', const='true',
                               default=default, help=text)
        else:
            group.add_argument(*names, dest=f.name, type=type(default), choices=choices,
                               default=default, help=text)


def options_from_args(args: argparse.Namespace, cls, **fixed):
    """An instance of ``cls`` from parsed flags (fields without a flag keep their default,
    or take ``fixed``)."""
    values = {f.name: getattr(args, f.name) for f in fields_of(cls) if hasattr(args, f.name)}
    values.update(fixed)
    return cls(**values)
