"""Op rules: everything the passes know about each op family (``base.OpRule``), gathered in a
:class:`RuleSet` that the passes and the cost analysis are given (``default_rules()`` unless you
pass your own)."""

from nnfc.passes.rules.base import GraphRules, LayerAxes, OpRule, RuleSet
from nnfc.passes.rules.defaults import default_rules

__all__ = ["OpRule", "RuleSet", "GraphRules", "LayerAxes", "default_rules"]
