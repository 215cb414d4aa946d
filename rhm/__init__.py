"""Random Hierarchy Model grammars: validated specs, sampling, parsing, likelihoods and training sets."""
from .data import DATA_DRAWS, draw_seed, sample_heldout, sample_iid, sample_unique
from .empirical import empirical_grammar
from .grammar import Grammar, Parse
from .spec import FAMILIES, GrammarSpec, RuleDist
from .strings import as_strings, encode_strings
from .twins import RankTree, Twins, TwinSet, derive, rank_trees, twin_set, twins

__all__ = [
    "DATA_DRAWS",
    "FAMILIES",
    "Grammar",
    "GrammarSpec",
    "Parse",
    "RankTree",
    "RuleDist",
    "TwinSet",
    "Twins",
    "as_strings",
    "derive",
    "draw_seed",
    "empirical_grammar",
    "encode_strings",
    "rank_trees",
    "sample_heldout",
    "sample_iid",
    "sample_unique",
    "twin_set",
    "twins",
]
