"""YAML text that Go programs read back as the same data.

PyYAML writes YAML 1.1, where ``001935``, ``09``, ``1e3`` and ``0o17`` are strings, so it
leaves them unquoted. Go's readers (kubectl, Helm, ``sigs.k8s.io/yaml``, the NVIDIA device
plugin's config loader) read the same text as numbers, so a label value or a config string
arrives with the wrong type: kubectl refuses it with "cannot unmarshal number into Go struct
field ObjectMeta.metadata.labels of type string", and a config file read into an untyped map
sees a number where the blueprint wrote a string. Everything blueprintd writes as YAML for a
Go program to read goes through ``dump``/``dump_all``, which quote every string a YAML 1.1 or
1.2 reader could take for a number, a boolean or null. Quoting more than needed is harmless.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when available

# Any spelling of a number a YAML 1.1 or 1.2 reader, or Go's strconv behind it, accepts:
# decimal with leading zeros, underscores, a fraction or an exponent; 0x/0o/0b; infinities, NaN.
_NUMBER = re.compile(
    r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?0[xXoObB][0-9a-fA-F_]+"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def ambiguous(text: str) -> bool:
    """Whether some YAML reader takes ``text``, written plain, for something other than a string."""
    return not text or text.lower() in _WORDS or _NUMBER.fullmatch(text) is not None


class GoSafeDumper(_Base):  # type: ignore[misc,valid-type]
    """A safe dumper that single-quotes strings a Go YAML reader would not read back as strings."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="'" if ambiguous(data) else None)


GoSafeDumper.add_representer(str, _represent_str)


def dump(data: Any, **options: Any) -> str:
    """``yaml.safe_dump`` whose output Go reads back with every string still a string."""
    text: str = yaml.dump(data, Dumper=GoSafeDumper, **options)
    return text


def dump_all(documents: Iterable[Any], **options: Any) -> str:
    """``yaml.safe_dump_all`` whose output Go reads back with every string still a string."""
    text: str = yaml.dump_all(documents, Dumper=GoSafeDumper, **options)
    return text
