"""`Registry`: the one table type behind every rule table of gradkiln (ops, gradients, forward-mode
and batching rules, TVM emitters, ONNX importers and exporters, passes).

A registry maps a key (an op name, an ONNX op type) to a rule. `register(key)` is a decorator that
refuses a second rule for a key unless `override=True` says the replacement is meant, so two
modules cannot silently fight over a key depending on import order. A key may also hold ordered
alternatives: `register(key, when=predicate)` puts a rule in front of the one already there, and
the entry then dispatches each call to the first alternative whose predicate accepts the call's
arguments, falling back to the earlier rule (PyTensor's rewrite database and tinygrad's pattern
matcher keep rules as data the same way). Read access is a `Mapping` (`key in table`,
`table[key]`, `table.get(key)`, `table | overrides`), so code that looks rules up does not care how an entry was built.
Item assignment replaces an entry outright (what `monkeypatch.setitem` does in tests).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Callable, Generic, TypeVar

Rule = TypeVar("Rule")
Predicate = Callable[..., bool]


class Registry(MutableMapping[str, Rule], Generic[Rule]):
    """A rule table keyed by name; `kind` names the rules in error messages ("gradient rule")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._rules: dict[str, Rule] = {}

    def register(self, key: str, *, when: Predicate | None = None, override: bool = False) -> Callable[[Rule], Rule]:
        """Decorator adding `rule` under `key`.

        - plain: the key must be new, or `override=True` replaces what it held;
        - `when=predicate`: the key must already hold a rule; the new rule serves the calls
          whose arguments satisfy `predicate(*args, **kwargs)`, the earlier one the rest.
        """

        def add(rule: Rule) -> Rule:
            if when is not None:
                if key not in self._rules:
                    raise ValueError(f"{self.kind} for {key!r}: `when=` needs an earlier rule to fall back on")
                self._rules[key] = _Alternative(when, rule, self._rules[key])  # type: ignore[arg-type,assignment]
            elif key in self._rules and not override:
                raise ValueError(f"{key!r} already has a {self.kind}; pass override=True to replace it")
            else:
                self._rules[key] = rule
            return rule

        return add

    def __getitem__(self, key: str) -> Rule:
        return self._rules[key]

    def __setitem__(self, key: str, rule: Rule) -> None:
        self._rules[key] = rule

    def __delitem__(self, key: str) -> None:
        del self._rules[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __or__(self, other: Mapping[str, Rule]) -> dict[str, Rule]:
        """`table | {key: rule}`: a plain dict of the table's rules with `other`'s in their place,
        for one call's overrides (`import_model(rules=...)`); the table itself is unchanged."""
        return {**self._rules, **other}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} keys)"


class _Alternative:
    """A rule that serves the calls `when` accepts and hands the others to `fallback`."""

    def __init__(self, when: Predicate, rule: Callable[..., Any], fallback: Callable[..., Any]) -> None:
        self.when, self.rule, self.fallback = when, rule, fallback

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return (self.rule if self.when(*args, **kwargs) else self.fallback)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"{_name(self.rule)} when {_name(self.when)}, else {_name(self.fallback)}"


def _name(fn: Callable[..., Any]) -> str:
    return repr(fn) if isinstance(fn, _Alternative) else getattr(fn, "__qualname__", repr(fn))
