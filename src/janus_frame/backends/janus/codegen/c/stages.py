"""Staged inner loops: latency-bound pointwise bodies cut into short loops.

In: the loop-opening lines of a pointwise kernel and the statements of its
innermost loop, as :class:`codegen.c.expr.Body` printed them (``const T name = text;``
definitions and ``ptr[index] = value;`` stores).  Out: the same lines
rewritten in place when the body chains several expensive calls, or nothing
changed.

Why: a body such as ``erf(log1p(sigmoid(tanh(..)..)..)..)`` is one dependency
chain of several hundred cycles per vector and several hundred instructions;
the out-of-order window holds less than one iteration, so consecutive vectors
do not overlap and the loop runs at the chain's latency, not at the machine's
throughput (2048x2048 chain of 8 transcendentals: 26.6 ms).  Cutting the
iteration space into blocks of ``STAGE_BLOCK`` elements and the body into
*stages* -- each one loop over the block holding at most one expensive call --
gives every stage loop independent iterations short enough to overlap (the
same chain: 11.0 ms).  Values a later stage reads pass through per-block
arrays that stay in L1; loads of the kernel's inputs are repeated instead.
Every value is computed by the same expression as before: with the inline
polynomials results are bitwise unchanged; with glibc's vector math the
elements a loop leaves to its scalar remainder call the scalar libm function,
and which elements those are depends on the loop (a few ulp).
Only bodies with at least two calls of math functions are staged: divisions
and square roots add to a stage's load but never start staging on their own
(the latency-bound case measured is a chain of transcendentals).
"""
from __future__ import annotations

import re

ENABLED = True  # tests compare against the unstaged loops
STAGE_BLOCK = 128  # elements per block: 64 / 128 / 256 measured 11.2 / 11.0 / 11.2 ms
MIN_EXTENT = 32  # shorter inner loops gain nothing from blocks

# Cost of one call in units of "one stage's worth" of latency: a stage takes
# statements up to one unit.  Division and square root are single
# instructions of ~20 cycles' latency; the jf_ functions are polynomial
# chains with a division or two.
_COSTS = {"jf_exp": 1.0, "jf_log": 1.0, "jf_tanh": 1.0, "jf_sigmoid": 1.0, "jf_erf": 1.0,
          "jf_log1p": 1.0, "jf_expm1": 1.0, "jf_pow": 1.0, "jf_sigmoid_d": 1.0}
_LIBM = re.compile(r"\b(?:exp|log|tanh|erf|log1p|expm1|pow|sin|cos|tan|asin|acos|atan|atan2|sinh|"
                   r"cosh|asinh|acosh|atanh|erfc|lgamma|tgamma|exp2|log2|log10|fmod)f?\(")
_CALL = re.compile(r"\b(jf_\w+)\(")
_DEF = re.compile(r"^const (\w+) (\w+) = (.*);$")
_STORE = re.compile(r"^(\w+)\[.*\] = (\w+);$")
_LOAD = re.compile(r"^(\w+)\[[^\[\]]*\]$")
_IDENT = re.compile(r"\b[A-Za-z_]\w*\b")
_FOR = re.compile(r"^for \(int64_t (\w+) = 0; \1 < (.+); \+\+\1\) \{$")


def _call_cost(text: str) -> float:
    """Weight of the math function calls (not integer helpers) in ``text``."""
    return sum(_COSTS.get(f, 0.0) for f in _CALL.findall(text)) + len(_LIBM.findall(text))


def cost(text: str) -> float:
    """Latency weight of one statement's right-hand side."""
    return _call_cost(text) + 0.5 * (text.count(" / ") + text.count("sqrt"))


def _stages(stmts):
    """Greedy cut: a statement whose cost would take the current stage over
    one unit opens the next stage."""
    stages, cur, load = [], [], 0.0
    for st in stmts:
        c = st[3]
        if cur and c > 0 and load + c > 1.0:
            stages.append(cur)
            cur, load = [], 0.0
        cur.append(st)
        load += c
    if cur:
        stages.append(cur)
    return stages


def stage_inner_loop(header: list, body: list, written_ptrs) -> bool:
    """Rewrite the innermost loop (the last ``for`` of ``header``, with the
    ``body`` statements) as blocks of stage loops.  Returns whether it did;
    ``header`` and ``body`` are changed in place then.  ``written_ptrs``:
    pointer names the kernel stores through (their loads are never repeated
    in a later stage)."""
    fi = max((j for j, ln in enumerate(header) if ln.lstrip().startswith("for (")), default=None)
    if fi is None:
        return False
    m = _FOR.match(header[fi].strip())
    if m is None:
        return False
    lv, size = m.groups()
    if size.isdigit() and int(size) < MIN_EXTENT:
        return False
    seq = []  # (name or None, ctype, text, cost, kind)
    for ln in body:
        s = ln.strip()
        d = _DEF.match(s)
        if d:
            seq.append((d.group(2), d.group(1), d.group(3), cost(d.group(3)), "def"))
        elif _STORE.match(s):
            seq.append((None, None, s, 0.0, "store"))
        else:
            return False  # a line this pass does not understand: leave the loop as it is
    if sum(1 for _, _, x, _, _ in seq if _call_cost(x) > 0) < 2:
        return False
    stages = _stages(seq)
    if len(stages) < 2:
        return False
    defined = {n: (t, x) for n, t, x, _, k in seq if k == "def"}

    def uses(text):
        return [u for u in _IDENT.findall(text) if u in defined]

    def repeatable(name):
        """A load of a buffer the kernel does not write, at an index not
        computed in the loop: cheaper to load again than to pass on."""
        lm = _LOAD.match(defined[name][1])
        return bool(lm) and lm.group(1) not in written_ptrs and not uses(defined[name][1])

    spilled = []  # names passed through block arrays, in definition order
    need = []  # per stage: names from earlier stages it reads
    for si, stg in enumerate(stages):
        own = {n for n, _, _, _, k in stg if k == "def"}
        got = []
        for n, _, x, _, _ in stg:
            for u in uses(x):
                if u not in own and u not in got:
                    got.append(u)
                    if not repeatable(u) and u not in spilled:
                        spilled.append(u)
        need.append(got)
    order = {n: i for i, n in enumerate(defined)}
    spilled.sort(key=order.__getitem__)

    ind = len(header[fi]) - len(header[fi].lstrip())
    pad = " " * ind
    head = []
    if fi > 0 and header[fi - 1].lstrip().startswith("#pragma omp"):
        prag = header[fi - 1].strip()
        if prag.startswith("#pragma omp parallel for simd"):
            head.append(pad + prag.replace("parallel for simd", "parallel for", 1))
        fi -= 1  # a plain "omp simd" pragma moves to the stage loops
    blk, cnt, j = f"{lv}_b", f"{lv}_n", f"{lv}_j"
    head.append(f"{pad}for (int64_t {blk} = 0; {blk} < {size}; {blk} += {STAGE_BLOCK}) {{")
    inner = pad + "  "
    head.append(f"{inner}const int64_t {cnt} = {size} - {blk} < {STAGE_BLOCK} ? "
                f"{size} - {blk} : {STAGE_BLOCK};")
    for n in spilled:
        head.append(f"{inner}{defined[n][0]} s_{n}[{STAGE_BLOCK}];")
    header[fi:] = head

    out = []
    sp = set(spilled)
    for si, stg in enumerate(stages):
        out.append(f"{inner}#pragma omp simd")
        out.append(f"{inner}for (int64_t {j} = 0; {j} < {cnt}; ++{j}) {{")
        st_pad = inner + "  "
        out.append(f"{st_pad}const int64_t {lv} = {blk} + {j};")
        for u in need[si]:
            t, x = defined[u]
            out.append(f"{st_pad}const {t} {u} = {'s_' + u + '[' + j + ']' if u in sp else x};")
        read_here = {u for _, _, x, _, _ in stg for u in uses(x)}
        for n, t, x, _, k in stg:
            if k == "def":
                if n not in read_here and n not in sp and repeatable(n):
                    continue  # a load only later stages read: they load it again
                out.append(f"{st_pad}const {t} {n} = {x};")
                if n in sp:
                    out.append(f"{st_pad}s_{n}[{j}] = {n};")
            else:
                out.append(st_pad + x)
        out.append(f"{inner}}}")
    body[:] = out
    return True


# -- library calls or inline polynomials -------------------------------------

LIVE_MAX = 4  # values live across a call beyond which the polynomial is inlined
_LIB_CALL = re.compile(r"\bjf_(exp|log|sigmoid|tanh|erf|log1p|expm1)\(")
_ACC = re.compile(r"^(\w+) (?:[-+*|&]|max|min)?=")


def inline_math(lines: list) -> None:
    """In every innermost loop of a kernel's ``lines``, a call of the vector
    math library (``jf_tanh`` ...) across which more than ``LIVE_MAX`` values
    of the loop body stay live becomes the inline polynomial (``jf_tanh_p``).
    The vector functions follow the vector ABI, in which every vector
    register is the caller's to save: a library call in the middle of a large
    body (a concatenated gate gradient computing tanh for one of four slices)
    spilled and reloaded the body's values around each call, and the LSTM
    step ran 8% slower than with the polynomials.  Short bodies -- staged
    loops, a softmax's exp pass -- keep the library call.  Changes ``lines``
    in place."""
    stack = []  # (index of a line opening a block, whether it contains a block)
    for i, ln in enumerate(lines):
        s = ln.strip()
        if s.endswith("{"):
            if stack:
                stack[-1][1] = True
            stack.append([i, False])
        elif s == "}" and stack:
            start, nested = stack.pop()
            if not nested and lines[start].strip().startswith("for ("):
                _inline_in_body(lines, start + 1, i)


def _inline_in_body(lines, lo, hi):
    body = [ln.strip() for ln in lines[lo:hi]]
    if not any(_LIB_CALL.search(s) for s in body):
        return
    matches = [_DEF.match(s) for s in body]
    defs = [m.group(2) if m else None for m in matches]
    uses = [set(_IDENT.findall(m.group(3) if m else s)) for m, s in zip(matches, body)]
    for j, s in enumerate(body):
        if not _LIB_CALL.search(s):
            continue
        later = set().union(*uses[j + 1:]) if j + 1 < len(body) else set()
        live = sum(1 for d in defs[:j] if d is not None and d in later)
        # running sums and flags of a reduction stay in registers too
        live += sum(1 for t in body[j + 1:] if _ACC.match(t) and "[" not in t.split("=")[0])
        if live > LIVE_MAX:
            lines[lo + j] = _LIB_CALL.sub(lambda m: f"jf_{m.group(1)}_p(", lines[lo + j])
