"""What a name looks like: the form a host name's A-labels are matched on (agents/targets.py).

A name that is really internationalised reaches the console as its A-labels (`xn--…`); it is
matched by what it looks like once decoded, so that `dс01` written with a Cyrillic `с` matches
the inventory's `dc01`, while the connector still gets the A-label.
"""

from __future__ import annotations

import unicodedata

# Letters of other scripts that are drawn like an ASCII letter, by case (applied before case
# folding, so that Greek capital Ν stays N while small ν becomes v). A curated subset of the
# look-alikes in Unicode's confusables data: Cyrillic, Greek, Armenian and Latin extensions,
# the scripts seen in homograph attacks on Latin-script names. A name whose skeleton is still
# not ASCII matches no ASCII inventory name and is, like any unknown target, treated as
# UNKNOWN_ASSET_CRITICALITY.
_LOOKALIKES = {
    # Cyrillic capitals
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "Х": "X", "У": "Y", "Ү": "Y", "Ѕ": "S", "І": "I", "Ӏ": "I",
    "Ј": "J", "Ԛ": "Q", "Ԝ": "W", "Һ": "H", "Ԁ": "D", "Ԍ": "G", "Ɩ": "I",
    # Cyrillic small letters
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "ү": "y", "х": "x",
    "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    "ь": "b", "ѵ": "v", "ɡ": "g",
    # Greek capitals
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
    "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϳ": "J",
    # NFKC turns the lunate sigmas (Ϲ ϲ, drawn like C c) into Σ and ς: those stand for C too.
    "Σ": "C", "σ": "c", "ς": "c",
    # Greek small letters
    "α": "a", "ο": "o", "ν": "v", "ι": "i", "κ": "k", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ϳ": "j", "γ": "y", "ω": "w", "ε": "e",
    # Armenian
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g", "զ": "q", "ա": "w", "ե": "t",
    "Օ": "O", "Ս": "U",
    # Latin letters outside ASCII drawn like ASCII ones
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i", "ĸ": "k", "ʋ": "u", "ℓ": "l",
}  # fmt: skip
_SKELETON = str.maketrans(_LOOKALIKES)
# Full stops that IDNA reads as dots (NFKC folds the fullwidth one, not the ideographic).
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def skeleton(text: str) -> str:
    """What a name looks like: the form compared when matching the inventory.

    Compatibility forms folded (NFKC: fullwidth, mathematical, circled letters), look-alike
    letters of other scripts read as the ASCII ones they imitate (judged before case folding,
    so that a capital's look-alike counts as a capital), accents and invisible characters
    dropped, case folded.
    """
    folded = unicodedata.normalize("NFKC", text).translate(_DOTS)
    if folded.isascii():
        return folded.casefold()
    drawn = unicodedata.normalize("NFD", folded.translate(_SKELETON)).translate(_SKELETON)
    bare = "".join(c for c in drawn if unicodedata.category(c) not in ("Mn", "Me", "Cf"))
    return unicodedata.normalize("NFC", bare).casefold().translate(_SKELETON)
