"""Symbolic values: what the interpreter keeps on its stack and in its locals.

In: real Python objects read from the frame (wrapped with the source they
came from, output.py) and results of symbolic operations.
Out: one kind of value per class, each in the module of its family, with
everything Python can do with it while tracing (the protocol is base.py):

- constants.py: ``Const`` (a Python value known at trace time, specialised
  and guarded when it came from the frame), ``DynInt``, ``DerivedConst``,
  ``SymV`` (a size of a dynamic dimension);
- tensors.py: ``TensorV`` (an fx node plus its fake tensor), ``ItemV``;
- containers.py: ``ListV``, ``TupleV``, ``SetV``, ``TensorListV``,
  ``SliceV``, ``IterV`` (a materialised iterator: loops are unrolled);
- dicts.py: ``DictV``, ``DictObjV`` (an instance of a dict subclass created
  while tracing: a transformers ModelOutput, a defaultdict), ``RealDictV`` (a
  real one read from the frame), ``DictViewV`` (a live keys/values/items view);
- objects.py: ``ObjV`` (a real object used as is), ``NewObjV`` (an instance
  created while tracing), ``SuperV``;
- functions.py: ``FunctionV`` (made by MAKE_FUNCTION), ``PartialV``
  (``functools.partial`` made while tracing), ``CellV``;
- methods.py: ``MethodV`` (a bound method of a symbolic receiver);
- contexts.py: ``CtxV``, ``ExitV`` (grad mode and autocast blocks);
- numpy.py: ``NdarrayV`` (an ndarray or numpy scalar whose data is a graph
  tensor), numpy functions and methods through ``torch._numpy``;
- environ.py: ``EnvironV`` (``os.environ``: reads guarded on the variable);
- base.py: ``NullV`` (the NULL 3.11 pushes below callables);
- operators.py: binary operators, comparisons and identity between kinds.

Each value carries ``source`` (how to fetch it again at run time, or None
for values created while tracing).
"""
from .base import NO, NULL, NullV, Value
from .constants import Const, DerivedConst, DynFloat, DynInt, SymV, unguarded
from .methods import MethodV
from .tensors import ItemV, TensorV
from .objects import NewObjV, ObjV
from .supers import SuperV
from .containers import IterV, ListV, SetV, SliceV, TensorListV, TupleV
from .dicts import DictObjV, DictV, DictViewV, RealDictV
from .functions import CellV, FunctionV, PartialV
from .contexts import CtxV, ExitV
from .numpy import NdarrayV
from .environ import EnvironV

__all__ = [
    "NO", "NULL", "CellV", "Const", "CtxV", "DerivedConst", "DictObjV", "DictV", "DictViewV",
    "DynFloat", "DynInt", "EnvironV", "ExitV", "FunctionV", "ItemV", "IterV", "ListV", "MethodV", "NdarrayV",
    "NewObjV", "NullV", "ObjV", "PartialV", "RealDictV", "SetV", "SliceV", "SuperV", "SymV",
    "TensorListV", "TensorV", "TupleV",
    "Value", "unguarded",
]
