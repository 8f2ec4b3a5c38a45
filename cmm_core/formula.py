"""Energies typed as formulas: ``parse("(|x| - 2)^2 / 0.32", dim=2)`` -> :class:`~cmm_core.energies.Energy`.

Grammar: numbers (``2``, ``0.5``, ``1e-3``), the variables ``x1 .. xd``, the constant ``pi``,
``+ - * /``, powers ``^`` or ``**`` (right-associative, above unary minus: ``-x1^2 = -(x1^2)``),
unary minus, parentheses, ``|x|`` or ``norm(x)`` (the Euclidean norm of the whole point),
``|expr|`` (absolute value) and the functions ``exp log sqrt abs sin cos tanh cosh log1p`` (one
argument), ``logaddexp min max`` (two, elementwise).

The text is read by Python's ``ast.parse`` (which only builds a syntax tree, it runs nothing) and
the tree is walked with a whitelist: each allowed node becomes a small closure over ``jax.numpy``,
anything else raises :class:`FormulaError` saying what is allowed. The user's text is never given to
``eval``/``exec`` or compiled to a code object, and constants are never combined in Python (``2^1000``
is a float32 ``inf``, not a big integer), so any text of at most ``MAX_CHARS`` characters either
gives an energy or a FormulaError quickly. ``docs/energies.md`` has the reasons.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from typing import Callable, Optional

import jax.numpy as jnp
import numpy as np

from cmm_core.energies import Energy

__all__ = ["FormulaError", "parse", "variables", "FUNCTIONS", "ALLOWED", "MAX_CHARS", "MAX_DEPTH",
           "MAX_EXPONENT", "MAX_LITERAL", "MAX_DIM"]

MAX_CHARS = 500  # longest formula
MAX_DEPTH = 150  # deepest expression tree (a sum of k terms is k deep, a call one more than its argument)
MAX_EXPONENT = 64  # largest |p| of a literal exponent x^p
MAX_LITERAL = 1e9  # largest |number| written in a formula
MAX_DIM = 4096  # highest variable index x_k

# name -> (number of arguments, function)
FUNCTIONS: dict[str, tuple[int, Callable]] = {
    "exp": (1, jnp.exp), "log": (1, jnp.log), "sqrt": (1, jnp.sqrt), "abs": (1, jnp.abs),
    "sin": (1, jnp.sin), "cos": (1, jnp.cos), "tanh": (1, jnp.tanh), "cosh": (1, jnp.cosh),
    "log1p": (1, jnp.log1p), "logaddexp": (2, jnp.logaddexp), "min": (2, jnp.minimum),
    "max": (2, jnp.maximum), "norm": (1, None),
}
CONSTANTS = {"pi": math.pi}

ALLOWED = ("Allowed: numbers (2, 0.5, 1e-3), the variables x1, x2, ..., the constant pi, + - * / and "
           "^ (or **) for powers, unary minus, parentheses, |x| or norm(x) for the Euclidean norm of x, "
           "|...| for an absolute value, and the functions exp, log, sqrt, abs, sin, cos, tanh, cosh, log1p "
           "(one argument), logaddexp, min, max (two arguments). Write products explicitly: 2*x1.")

_VAR = re.compile(r"x([1-9][0-9]*)\Z")
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "^"}
_NOT_ALLOWED = {  # node type -> what the message says
    ast.Attribute: "attribute access (a.b) is", ast.Subscript: "subscripts (a[i]) are", ast.Lambda: "lambda is",
    ast.ListComp: "comprehensions are", ast.SetComp: "comprehensions are", ast.DictComp: "comprehensions are",
    ast.GeneratorExp: "comprehensions are", ast.Compare: "comparisons (<, ==, ...) are",
    ast.BoolOp: "'and' / 'or' are", ast.IfExp: "'if ... else' is", ast.Tuple: "tuples (a, b) are",
    ast.List: "lists [...] are", ast.Set: "sets {...} are", ast.Dict: "dicts {...} are",
    ast.JoinedStr: "strings are", ast.FormattedValue: "strings are", ast.NamedExpr: "assignments (:=) are",
    ast.Starred: "starred arguments (*a) are", ast.Await: "await is", ast.Yield: "yield is",
    ast.YieldFrom: "yield is", ast.Slice: "slices (a:b) are",
}
_OP_NAMES = {ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
             ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&", ast.Not: "not", ast.Invert: "~"}


class FormulaError(ValueError):
  """A formula that cannot be used; the message says why and what is allowed."""


def _fail(what: str):
  raise FormulaError(f"{what}. {ALLOWED}")


def _rewrite(text: str) -> str:
  """``^`` -> ``**`` and ``|...|`` -> ``abs(...)`` (a bar opens after an operator, ``(``, ``,``, another
  opening bar or at the start, otherwise it closes the innermost open bar)."""
  text = text.replace("^", "**")
  out, stack, prev = [], [], ""
  for ch in text:
    if ch == "|":
      if prev == "" or prev in "+-*/(,":
        out.append("abs(")
        stack.append("|")
        prev = "("
      elif stack and stack[-1] == "|":
        out.append(")")
        stack.pop()
        prev = ")"
      else:
        _fail("unmatched | (write |expr| for an absolute value, |x| for the norm)")
      continue
    if ch == "(":
      stack.append("(")
    elif ch == ")":
      if stack and stack[-1] == "|":
        _fail("unmatched | inside parentheses")
      if stack:
        stack.pop()
    out.append(ch)
    if not ch.isspace():
      prev = ch
  if "|" in stack:
    _fail("unmatched | (an absolute value |...| is not closed)")
  return "".join(out)


def _depth(tree: ast.Expression) -> int:
  """Nesting depth of the expression (expression nodes only), iteratively (no recursion on user input)."""
  deepest, todo = 0, [(tree.body, 1)]
  while todo:
    node, d = todo.pop()
    deepest = max(deepest, d)
    if deepest > MAX_DEPTH:
      break
    todo.extend((child, d + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))
  return deepest


def _literal(node) -> Optional[float]:
  """The value of a number literal, possibly signed (``-2``), else None."""
  if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
    v = _literal(node.operand)
    return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
  if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
    return node.value
  return None


class _Compiler:
  """Walks the whitelisted tree into closures ``x [n, d] -> [n] or []``; records the variables used."""

  def __init__(self):
    self.indices: set[int] = set()
    self.uses_norm = False

  def build(self, node) -> Callable:
    if isinstance(node, ast.Expression):
      return self.build(node.body)
    if isinstance(node, ast.Constant):
      v = node.value
      if isinstance(v, bool) or not isinstance(v, (int, float)):
        _fail("strings are not allowed" if isinstance(v, (str, bytes)) else f"the value {v!r} is not allowed")
      if not abs(v) <= MAX_LITERAL:  # also inf (1e999); a long integer is compared exactly
        shown = repr(v) if len(repr(v)) <= 16 else repr(v)[:12] + "..."
        _fail(f"numbers must be at most {MAX_LITERAL:g} in size, got {shown}")
      c = float(v)
      return lambda x: jnp.asarray(c, x.dtype)
    if isinstance(node, ast.Name):
      return self.name(node.id)
    if isinstance(node, ast.UnaryOp):
      if isinstance(node.op, ast.USub):
        f = self.build(node.operand)
        return lambda x: -f(x)
      if isinstance(node.op, ast.UAdd):
        return self.build(node.operand)
      _fail(f"the operator {_OP_NAMES.get(type(node.op), type(node.op).__name__)} is not allowed")
    if isinstance(node, ast.BinOp):
      return self.binop(node)
    if isinstance(node, ast.Call):
      return self.call(node)
    _fail(f"{_NOT_ALLOWED.get(type(node), type(node).__name__ + ' expressions are')} not allowed")

  def name(self, name: str) -> Callable:
    if name in CONSTANTS:
      c = CONSTANTS[name]
      return lambda x: jnp.asarray(c, x.dtype)
    m = _VAR.match(name)
    if m:
      k = int(m.group(1)) if len(m.group(1)) <= 6 else MAX_DIM + 1
      if k > MAX_DIM:
        _fail(f"variables go up to x{MAX_DIM}, got {name[:12]}")
      self.indices.add(k)
      return lambda x: x[:, k - 1]
    if name == "x":
      _fail("x alone is the whole point: use it as |x| or norm(x) (its Euclidean norm), or use x1, x2, ...")
    if name in FUNCTIONS:
      _fail(f"{name} is a function: call it, {name}(...)")
    if re.fullmatch(r"x0*", name) or re.fullmatch(r"x0[0-9]*", name):
      _fail(f"unknown variable {name!r}: the variables are x1, x2, ... (from 1, no leading zeros)")
    _fail(f"unknown name {name[:40]!r}")

  def binop(self, node: ast.BinOp) -> Callable:
    op = type(node.op)
    if op not in _BINOPS:
      _fail(f"the operator {_OP_NAMES.get(op, op.__name__)} is not allowed")
    a = self.build(node.left)
    if op is ast.Pow:
      p = _literal(node.right)
      if p is not None:
        if not abs(p) <= MAX_EXPONENT:
          _fail(f"exponents must be at most {MAX_EXPONENT} in size, got {p:g}")
        if float(p).is_integer():
          k = int(p)
          return lambda x: a(x) ** k  # integer power: exact, and fine for negative bases
      b = self.build(node.right)
      return lambda x: jnp.power(a(x), b(x))
    b = self.build(node.right)
    if op is ast.Add:
      return lambda x: a(x) + b(x)
    if op is ast.Sub:
      return lambda x: a(x) - b(x)
    if op is ast.Mult:
      return lambda x: a(x) * b(x)
    return lambda x: a(x) / b(x)

  def call(self, node: ast.Call) -> Callable:
    if not isinstance(node.func, ast.Name):
      if type(node.func) in _NOT_ALLOWED:  # x1.exp(), f[0](x1), ...
        _fail(f"{_NOT_ALLOWED[type(node.func)]} not allowed")
      _fail("only the listed functions can be called (no methods or computed functions)")
    name = node.func.id
    if name not in FUNCTIONS:
      _fail(f"the function {name[:40]!r} is not allowed")
    if node.keywords:
      _fail(f"{name}: keyword arguments are not allowed")
    if any(isinstance(a, ast.Starred) for a in node.args):
      _fail(f"{name}: starred arguments (*a) are not allowed")
    n_args, fn = FUNCTIONS[name]
    if len(node.args) != n_args:
      _fail(f"{name} takes {n_args} argument{'s' if n_args > 1 else ''}, got {len(node.args)}")
    if name in ("abs", "norm") and isinstance(node.args[0], ast.Name) and node.args[0].id == "x":
      self.uses_norm = True
      return lambda x: jnp.sqrt(jnp.sum(x * x, -1) + 1e-30)  # finite gradient at 0
    if name == "norm":
      _fail("norm takes the whole point: norm(x) (for one coordinate write |x1| or abs(x1))")
    args = [self.build(a) for a in node.args]
    if n_args == 1:
      f0 = args[0]
      return lambda x: fn(f0(x))
    f0, f1 = args
    return lambda x: fn(f0(x), f1(x))


def _tree(text) -> ast.Expression:
  if not isinstance(text, str):
    raise FormulaError(f"a formula must be text, got {type(text).__name__}")
  if len(text) > MAX_CHARS:
    _fail(f"the formula is {len(text)} characters long; at most {MAX_CHARS} are allowed")
  text = " ".join(text.split())  # newlines and tabs as spaces
  if not text:
    _fail("the formula is empty")
  if re.match(r"(import|from)\b", text):
    _fail("imports are not allowed")
  src = _rewrite(text)
  try:
    with warnings.catch_warnings():  # e.g. SyntaxWarning "invalid decimal literal": the error says it
      warnings.simplefilter("ignore")
      tree = ast.parse(src, mode="eval")  # a syntax tree only: nothing is run
  except Exception as e:  # SyntaxError, null bytes, surrogates, a parser stack limit
    msg = getattr(e, "msg", None) or str(e) or type(e).__name__
    _fail(f"could not read the formula ({msg[:80]})")
  if _depth(tree) > MAX_DEPTH:
    _fail(f"the formula is nested too deeply (more than {MAX_DEPTH} levels)")
  return tree


def variables(text: str) -> tuple[int, bool]:
  """``(highest k of the x_k used (0 if none), whether |x| / norm(x) is used)``; FormulaError if invalid."""
  c = _Compiler()
  c.build(_tree(text))
  return max(c.indices, default=0), c.uses_norm


def parse(text: str, dim: Optional[int] = None) -> Energy:
  """The energy ``E(x)`` written in ``text``, an :class:`Energy` of dimension ``dim``.

  ``dim`` defaults to the highest ``k`` of the ``x_k`` used (at least 1); given, it must be at least
  that. ``|x|`` (the norm of the whole point) with no ``x_k`` needs ``dim``. Raises
  :class:`FormulaError` (a ValueError) for anything outside the grammar, with what is allowed.
  """
  tree = _tree(text)
  c = _Compiler()
  f = c.build(tree)
  highest = max(c.indices, default=0)
  if dim is None:
    if c.uses_norm and highest == 0:
      raise FormulaError("|x| (the norm of the whole point) needs the dimension: pass dim, "
                         "e.g. parse(text, dim=2)")
    dim = max(highest, 1)
  elif isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= MAX_DIM:
    raise FormulaError(f"dim must be an integer in [1, {MAX_DIM}], got {dim!r}")
  elif highest > dim:
    raise FormulaError(f"x{highest} is used but dim is {dim}: the variables are x1 .. x{dim}")
  dim = int(dim)

  def fn(x):
    x = jnp.asarray(x)
    return jnp.broadcast_to(f(x), x.shape[:1])

  clean = " ".join(text.split())
  return Energy(fn=fn, dim=dim, name=clean, params={"formula": clean})
