/* janus_frame._C: the callable wrapper returned by compile(), enable() and
 * disable() (see the comment on Wrapper below). Split from eval_frame.c;
 * the two share only what hook.h declares. */
#include "compat.h"
#include "hook.h"
#include <stddef.h>
#include <structmember.h>

/* ------------------------------------------------------------------ */
/* Wrapper: the callable returned by compile(), disable() and enable().   */

/* Runs fn with this thread's callback set to `callback` (None: off) for the
 * duration of the call. It is a C callable on purpose: it has no Python
 * frame, so another JIT tracing its caller (TorchDynamo) cannot trace through
 * it and capture the wrapped function in its own graph; the wrapped
 * function's frame reaches our hook first. It is also cheaper than a Python
 * wrapper. Carries a __dict__ (functools.update_wrapper) and binds as a
 * method when stored in a class. */
typedef struct {
    PyObject_HEAD
    PyObject *fn;       /* strong */
    PyObject *callback; /* strong; None = janus_frame off */
    PyObject *dict;     /* strong or NULL: instance __dict__ */
    PyObject *weakreflist;
    vectorcallfunc vectorcall;
} Wrapper;

/* Borrows self and args; returns fn's result (new ref) or NULL. */
static PyObject *wrapper_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames) {
    Wrapper *w = (Wrapper *)self;
    /* Another interpreter (which has its own eval function): run natively. */
    if (!jf_in_home_interpreter()) return PyObject_Vectorcall(w->fn, args, nargsf, kwnames);
    PyObject *cb = w->callback == Py_None ? NULL : w->callback;
    Py_XINCREF(cb);
    PyObject *prev = jf_swap_callback(cb);
    PyObject *r = PyObject_Vectorcall(w->fn, args, nargsf, kwnames);
    PyObject *mine = jf_swap_callback(prev);
    Py_XDECREF(mine);
    return r;
}

/* Borrows type/args/kwds; returns a new Wrapper (new ref) or NULL. */
static PyObject *wrapper_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *fn, *cb;
    if (!PyArg_ParseTuple(args, "OO:Wrapper", &fn, &cb)) return NULL;
    if (!PyCallable_Check(fn) || (cb != Py_None && cb != Py_False && !PyCallable_Check(cb))) {
        PyErr_SetString(PyExc_TypeError, "Wrapper(fn, callback): fn must be callable and "
                                         "callback None, False or a callable");
        return NULL;
    }
    Wrapper *w = (Wrapper *)type->tp_alloc(type, 0);
    if (w == NULL) return NULL;
    Py_INCREF(fn);
    Py_INCREF(cb);
    w->fn = fn;
    w->callback = cb;
    w->vectorcall = wrapper_vectorcall;
    return (PyObject *)w;
}

static int wrapper_traverse(PyObject *self, visitproc visit, void *arg) {
    Wrapper *w = (Wrapper *)self;
    Py_VISIT(w->fn);
    Py_VISIT(w->callback);
    Py_VISIT(w->dict);
    return 0;
}

static int wrapper_clear(PyObject *self) {
    Wrapper *w = (Wrapper *)self;
    Py_CLEAR(w->fn);
    Py_CLEAR(w->callback);
    Py_CLEAR(w->dict);
    return 0;
}

static void wrapper_dealloc(PyObject *self) {
    PyObject_GC_UnTrack(self);
    if (((Wrapper *)self)->weakreflist != NULL) PyObject_ClearWeakRefs(self);
    wrapper_clear(self);
    Py_TYPE(self)->tp_free(self);
}

/* Borrows self and obj; returns self (new ref) or a bound method (new ref). */
static PyObject *wrapper_descr_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

/* Borrows self; returns a new string. */
static PyObject *wrapper_repr(PyObject *self) {
    Wrapper *w = (Wrapper *)self;
    return PyUnicode_FromFormat("<janus_frame wrapper of %R>", w->fn);
}

static PyMemberDef wrapper_members[] = {
    {"__janus_fn__", T_OBJECT, offsetof(Wrapper, fn), READONLY, "the wrapped callable"},
    {"__janus_callback__", T_OBJECT, offsetof(Wrapper, callback), READONLY,
     "the callback set while it runs"},
    {"__dictoffset__", T_PYSSIZET, offsetof(Wrapper, dict), READONLY},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(Wrapper, weakreflist), READONLY},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Wrapper, vectorcall), READONLY},
    {NULL},
};

static PyGetSetDef wrapper_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

PyTypeObject JF_Wrapper_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "janus_frame._C.Wrapper",
    .tp_basicsize = sizeof(Wrapper),
    .tp_dealloc = wrapper_dealloc,
    .tp_vectorcall_offset = offsetof(Wrapper, vectorcall),
    .tp_repr = wrapper_repr,
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "Wrapper(fn, callback): calls fn with this thread's janus_frame callback set.",
    .tp_traverse = wrapper_traverse,
    .tp_clear = wrapper_clear,
    .tp_weaklistoffset = offsetof(Wrapper, weakreflist),
    .tp_members = wrapper_members,
    .tp_getset = wrapper_getset,
    .tp_descr_get = wrapper_descr_get,
    .tp_dictoffset = offsetof(Wrapper, dict),
    .tp_new = wrapper_new,
};
