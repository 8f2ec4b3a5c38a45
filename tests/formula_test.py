"""cmm_core.formula: typed energies, the whitelist's rejections and a hypothesis fuzz."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmm_core import energies
from cmm_core.energies import Energy
from cmm_core.formula import MAX_CHARS, FormulaError, parse, variables


def _points(d, n=64, seed=0):
  return (np.random.default_rng(seed).standard_normal((n, d)) * 2).astype(np.float32)


@pytest.mark.parametrize("text", ["(|x| - 2)^2 / 0.32", "(norm(x) - 2)**2 / 0.32", "(abs(x) - 2)^2/.32"])
def test_typed_ring_equals_the_builtin(text):
  e = parse(text, dim=2)
  assert isinstance(e, Energy) and e.dim == 2 and e.name == text
  x = _points(2)
  x[0] = 0
  np.testing.assert_allclose(e(x), energies.make("ring")(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,text", [
    ("wave", "0.5 * ((x2 - sin(pi * x1 / 2)) / 0.4)^2 + x1^2 / 8"),
    ("double_well", "3 * (x1^2 - 1)^2 + x2^2 / 2"),
    ("banana", "x1^2/2 + ((x2 - 0.5*(x1^2 - 1))/0.5)^2/2"),
    ("two_gaussians", "log(2) + log(2*pi*0.25) - logaddexp(-((x1-0.8)^2+(x2-0.8)^2)/0.5, "
                      "-((x1+0.8)^2+(x2+0.8)^2)/0.5)"),
    ("rings", "min(min(min(min((|x|-1)^2, (|x|-2)^2), (|x|-3)^2), (|x|-4)^2), (|x|-5)^2) / 0.04"),
])
def test_typed_builtins(name, text):
  x = _points(2, seed=1)
  np.testing.assert_allclose(parse(text, dim=2)(x), energies.make(name)(x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("text,ref", [
    ("x1 + 2*x2 - x3/4", lambda x: x[:, 0] + 2 * x[:, 1] - x[:, 2] / 4),
    ("-x1^2", lambda x: -x[:, 0] ** 2),
    ("2^3^2 + 0*x1", lambda x: np.full(len(x), 512.0)),
    ("x1 ** -2 + 1e-3", lambda x: x[:, 0] ** -2.0 + 1e-3),
    ("|x1 - 1| * |x2|", lambda x: np.abs(x[:, 0] - 1) * np.abs(x[:, 1])),
    ("||x| - 1|", lambda x: np.abs(np.linalg.norm(x, axis=1) - 1)),
    ("exp(-x1) + log(1 + x2^2) + sqrt(x3^2) + abs(x1)", lambda x: np.exp(-x[:, 0]) + np.log(1 + x[:, 1] ** 2)
     + np.abs(x[:, 2]) + np.abs(x[:, 0])),
    ("sin(x1) * cos(x2) + tanh(x3) - cosh(x1/4) + log1p(x2^2)",
     lambda x: np.sin(x[:, 0]) * np.cos(x[:, 1]) + np.tanh(x[:, 2]) - np.cosh(x[:, 0] / 4) + np.log1p(x[:, 1] ** 2)),
    ("logaddexp(x1, x2) + min(x1, x3) - max(x2, 0)",
     lambda x: np.logaddexp(x[:, 0], x[:, 1]) + np.minimum(x[:, 0], x[:, 2]) - np.maximum(x[:, 1], 0)),
    ("(x1^2)^0.5 + +x2", lambda x: np.abs(x[:, 0]) + x[:, 1]),
    ("pi", lambda x: np.full(len(x), np.pi)),
    ("x1\n + x2\t", lambda x: x[:, 0] + x[:, 1]),
])
def test_grammar_evaluates_like_numpy(text, ref):
  x = _points(3, seed=2)
  e = parse(text, dim=3)
  np.testing.assert_allclose(e(x), ref(x.astype(np.float64)), rtol=2e-5, atol=1e-5)


def test_dimension_inferred_and_checked():
  assert parse("x1").dim == 1 and parse("2").dim == 1 and parse("x7 + x2").dim == 7
  assert parse("x1 + |x|", dim=4).dim == 4 and parse("|x| + x3").dim == 3
  assert variables("x2 * norm(x)") == (2, True) and variables("exp(x5)") == (5, False)
  with pytest.raises(FormulaError, match="x3 is used but dim is 2"):
    parse("x3", dim=2)
  with pytest.raises(FormulaError, match=r"needs the dimension: pass dim"):
    parse("(|x| - 2)^2")
  with pytest.raises(FormulaError, match=r"dim must be an integer"):
    parse("x1", dim=0)
  assert parse("3").__call__(np.zeros((5, 1))).shape == (5,)  # a constant still gives one value per point


def test_gradients_are_finite_and_jit_works():
  e = parse("(|x| - 2)^2 / 0.32 + logaddexp(x1, -x2) + max(x1, x2)", dim=2)
  x = jnp.asarray(_points(2))
  x = x.at[0].set(0.0)
  g = jax.jit(jax.grad(lambda y: jnp.sum(e(y))))(x)
  assert bool(jnp.all(jnp.isfinite(g)))
  np.testing.assert_allclose(jax.jit(e.fn)(x), e(x), rtol=1e-6)


@pytest.mark.parametrize("text,message", [
    ("x1.real", "attribute access"),
    ("x1.__class__.__bases__", "attribute access"),
    ("x1[0]", "subscripts"),
    ("__import__('os').system('ls')", "attribute access"),
    ("__import__('os')", "the function '__import__' is not allowed"),
    ("eval('1')", "the function 'eval' is not allowed"),
    ("lambda x: x", "lambda is not allowed"),
    ("[x1 for x1 in y]", "comprehensions"),
    ("import os", "imports are not allowed"),
    ("from os import path", "imports are not allowed"),
    ("y1 + 2", "unknown name 'y1'"),
    ("e^x1", "unknown name 'e'"),
    ("x", "x alone is the whole point"),
    ("x0", "unknown variable 'x0'"),
    ("x01", "unknown variable 'x01'"),
    ("'abc'", "strings are not allowed"),
    ("f'{x1}'", "strings are not allowed"),
    ("x1^65", "exponents must be at most 64"),
    ("x1 ** -100", "exponents must be at most 64"),
    ("2e10 * x1", "numbers must be at most"),
    ("1e999", "numbers must be at most"),
    ("9" * 400, "numbers must be at most"),
    ("x1+" * 160 + "1", "nested too deeply"),
    ("-(" * 160 + "x1" + ")" * 160, "nested too deeply"),
    ("-" * 300 + "x1", "nested too deeply"),
    ("x1 + " * 130 + "1", "at most 500 are allowed"),
    ("x1 % 2", "the operator % is not allowed"),
    ("x1 // 2", "the operator // is not allowed"),
    ("~x1", "the operator ~ is not allowed"),
    ("x1 < 2", "comparisons"),
    ("x1 and x2", "'and' / 'or'"),
    ("x1 if x2 else 3", "'if ... else'"),
    ("(x1, x2)", "tuples"),
    ("{1: 2}", "dicts"),
    ("exp(x1, x2)", "exp takes 1 argument, got 2"),
    ("max(x1)", "max takes 2 arguments, got 1"),
    ("exp(x=1)", "keyword arguments"),
    ("exp(*x1)", "starred"),
    ("exp", "exp is a function"),
    ("norm(x1)", "norm takes the whole point"),
    ("x1.exp()", "attribute access"),
    ("(x1)(x2)", "the function 'x1' is not allowed"),
    ("(x1 + x2)(3)", "only the listed functions can be called"),
    ("|x1", "unmatched |"),
    ("x1 |", "unmatched |"),
    ("(|x1)|", "unmatched |"),
    ("2x1", "could not read the formula"),
    ("x1 = 2", "could not read the formula"),
    ("x1 +", "could not read the formula"),
    ("(" * 300 + "1" + ")" * 250, "at most 500"),
    ("(" * 240 + "1" + ")" * 240, "could not read the formula"),  # Python's parser: too many nested
    ("\x00", "could not read the formula"),
    ("\ud800", "could not read the formula"),
    ("", "the formula is empty"),
    ("   \n ", "the formula is empty"),
    ("True + x1", "the value True is not allowed"),
    ("1j", "the value 1j is not allowed"),
    ("x1 := 2", "could not read the formula"),
    ("(y := 2)", "assignments"),
    ("x99999999", "variables go up to x4096"),
])
def test_rejections_say_what_is_allowed(text, message):
  with pytest.raises(FormulaError) as info:
    parse(text)
  assert message in str(info.value)
  assert "Allowed: numbers" in str(info.value) and "x1, x2" in str(info.value)
  assert isinstance(info.value, ValueError)


def test_non_text_is_rejected():
  for bad in (None, 3, b"x1", ["x1"]):
    with pytest.raises(FormulaError, match="a formula must be text"):
      parse(bad)
  assert MAX_CHARS == 500 and parse("x1+" * 140 + "1").dim == 1  # 421 characters, 141 terms
  assert parse("(" * 150 + "x2" + ")" * 150).dim == 2  # parentheses alone do not nest the tree


_X = np.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0], [3.0, 1.0, -2.0]], np.float32)


def _parse_or_formula_error(text):
  """parse either gives an Energy that evaluates to [n] without raising, or a FormulaError."""
  try:
    e = parse(text, dim=3)
  except FormulaError:
    return None
  assert isinstance(e, Energy) and e.dim == 3
  assert e(_X).shape == (3,)
  return e


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.text(max_size=80))
def test_fuzz_random_text(text):
  _parse_or_formula_error(text)


@_FUZZ
@given(st.text(alphabet="x123 .e+-*/^()|,pi", max_size=40))
def test_fuzz_random_formula_characters(text):
  _parse_or_formula_error(text)


_TOKENS = ["x1", "x2", "x3", "x", "x0", "y", "pi", "2", "0.5", "1e-3", "1e309", "99", "+", "-", "*", "/",
           "^", "**", "(", ")", "|", ",", ".", "[", "]", "exp", "log", "sqrt", "abs", "sin", "cos", "tanh",
           "cosh", "log1p", "logaddexp", "min", "max", "norm", "lambda", ":", "import", "'s'", "=", "<",
           "%", "@", "if", "else", "for", "in", "__import__", "__class__", "not", "~", "&", " "]


@_FUZZ
@given(st.lists(st.sampled_from(_TOKENS), max_size=30))
def test_fuzz_random_token_sequences(tokens):
  _parse_or_formula_error("".join(tokens))
  _parse_or_formula_error(" ".join(tokens))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 200), st.sampled_from(["(", "|", "-", "exp(", "x1^", "|x|^"]))
def test_fuzz_deep_nesting_never_recurses_out(depth, piece):
  """Deep or long inputs end in a FormulaError (never a RecursionError or a hang)."""
  closing = {"(": ")", "|": "|", "exp(": ")"}.get(piece, "")
  _parse_or_formula_error(piece * depth + "x1" + closing * depth)
