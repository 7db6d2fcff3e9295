"""Letters drawn like ASCII ones, read from Unicode's own names, for tests that spell targets
the way an attacker would.

Read over the whole of Unicode (not only the blocks the canonicaliser scans), so that a Latin
letter added in a block it does not know about shows up as a failing test.
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from functools import cache

# `ᴄ` LATIN LETTER SMALL CAPITAL C, `ᶜ` MODIFIER LETTER SMALL C, `ı` LATIN SMALL LETTER
# DOTLESS I, `ɡ` LATIN SMALL LETTER SCRIPT G, `ƈ` LATIN SMALL LETTER C WITH HOOK; not a
# digraph such as `ǈ` LATIN CAPITAL LETTER L WITH SMALL LETTER J, which is two letters.
_NAMED = re.compile(
    r"(?:LATIN|MODIFIER) (?:(?:SUBSCRIPT|SUPERSCRIPT) )?(?:(?:SMALL|CAPITAL) )?LETTER "
    r"(?:(?:SMALL CAPITAL|SMALL|CAPITAL|DOTLESS|SCRIPT) )?(?P<letter>[A-Z])"
    r"(?: WITH (?!SMALL LETTER).+)?"
)

# Named as one letter, drawn like another (Unicode's confusables data agrees): read as drawn.
DRAWN_OTHERWISE = {"\u028b": "u"}  # ʋ LATIN SMALL LETTER V WITH HOOK


@cache
def named_lookalikes() -> dict[str, str]:
    """ASCII letter (lower case) -> the letters outside ASCII whose names say they are it."""
    found: dict[str, list[str]] = {letter: [] for letter in string.ascii_lowercase}
    for code in range(0x80, sys.maxunicode + 1):
        char = chr(code)
        if not unicodedata.category(char).startswith("L"):
            continue
        match = _NAMED.fullmatch(unicodedata.name(char, ""))
        if match:
            found[DRAWN_OTHERWISE.get(char, match["letter"].lower())].append(char)
    return {letter: "".join(chars) for letter, chars in found.items() if chars}
