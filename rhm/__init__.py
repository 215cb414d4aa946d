"""Random Hierarchy Model grammars: validated specs, sampling, parsing, likelihoods and training sets."""
from .data import sample_heldout, sample_iid, sample_unique
from .grammar import Grammar, Parse
from .spec import FAMILIES, GrammarSpec, RuleDist
from .strings import as_strings, encode_strings

__all__ = [
    "FAMILIES",
    "Grammar",
    "GrammarSpec",
    "Parse",
    "RuleDist",
    "as_strings",
    "encode_strings",
    "sample_heldout",
    "sample_iid",
    "sample_unique",
]
