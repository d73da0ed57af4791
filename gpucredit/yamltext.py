"""YAML as people write addresses in it.

YAML 1.1 (PyYAML's `safe_load`) reads an unquoted `0x70997970C5...79C8` as a
hexadecimal integer, so `issuers: [0x7099...]` would reach the code as
`[642829559307850963015472508762062935916233390536]`: an address written the
way every explorer and wallet shows it would be refused, or worse, turned
into a different string. `load` reads a 0x literal of 40 or more hex digits
(an address, a hash) as the text written; shorter ones (`0x10`) stay numbers.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from eth_utils import is_address, to_checksum_address

__all__ = ["address", "load", "looks_like_hex_text"]

_HEX_TEXT = re.compile(r"0[xX][0-9a-fA-F]{40,}")


def looks_like_hex_text(text: str) -> bool:
    """An address or hash as written: `0x` and 40 or more hex digits."""
    return bool(_HEX_TEXT.fullmatch(text.strip()))


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps long 0x literals as strings."""


def _int_or_hex_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = loader.construct_scalar(node)
    if isinstance(text, str) and looks_like_hex_text(text):
        return text
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:int", _int_or_hex_text)


def address(value: Any) -> str:
    """A checksummed address from a setting; ValueError says what is wrong.

    A number is refused with a hint: it is what a YAML parser other than
    `load` makes of an unquoted address.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"{value} is a number, not an address: write 0x followed by 40 hex digits "
            "(quoted, '0x...', if a YAML reader turned it into a number)"
        )
    text = str(value).strip()
    if not is_address(text):
        raise ValueError(f"{text!r} is not an address (0x followed by 40 hex digits)")
    return to_checksum_address(text)


def load(text: str) -> Any:
    """`yaml.safe_load`, except that addresses and hashes stay text."""
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: no arbitrary objects
