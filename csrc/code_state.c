/* janus_frame._C's accessors of the per-code cache (cache.h): strategies,
 * entries and the Python side's per-code state, read and set by hook.py and
 * cache.py. The hook itself and the record's lifetime are in eval_frame.c. */
#include "compat.h"
#include "cache.h"
#include "hook.h"

/* Borrows obj; returns it (borrowed) as a code object, or NULL with TypeError. */
static PyCodeObject *arg_code(PyObject *obj) {
    if (!PyCode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "expected a code object, got %.100s", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return (PyCodeObject *)obj;
}

/* Borrows args; returns None (new ref). */
static PyObject *py_set_code_strategy(PyObject *self, PyObject *args) {
    PyObject *c;
    int cur, rec;
    if (!PyArg_ParseTuple(args, "Oii", &c, &cur, &rec)) return NULL;
    PyCodeObject *code = arg_code(c);
    if (code == NULL) return NULL;
    if (cur < ACT_DEFAULT || cur > ACT_RUN_ONLY || rec < ACT_DEFAULT || rec > ACT_RUN_ONLY) {
        PyErr_SetString(PyExc_ValueError, "strategy actions must be DEFAULT, SKIP or RUN_ONLY");
        return NULL;
    }
    Extra *ex = jf_get_extra(code, 1);
    if (ex == NULL) return NULL;
    ex->cur_action = cur;
    ex->rec_action = rec;
    jf_extra_update_fast(ex);
    Py_RETURN_NONE;
}

/* Borrows code; returns a new (cur, rec) tuple. */
static PyObject *py_get_code_strategy(PyObject *self, PyObject *c) {
    PyCodeObject *code = arg_code(c);
    if (code == NULL) return NULL;
    Extra *ex = jf_get_extra(code, 0);
    return Py_BuildValue("(ii)", ex ? ex->cur_action : 0, ex ? ex->rec_action : 0);
}

/* Borrows code; returns a new list of (guard, replacement, owner), MRU first. */
static PyObject *py_code_entries(PyObject *self, PyObject *c) {
    PyCodeObject *code = arg_code(c);
    if (code == NULL) return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    Extra *ex = jf_get_extra(code, 0);
    for (Entry *e = ex ? ex->head : NULL; e != NULL; e = e->next) {
        PyObject *t = PyTuple_Pack(3, e->guard, e->replacement, e->owner);
        if (t == NULL || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(t);
    }
    return out;
}

/* Borrows code; returns None (new ref). Drops entries, strategy and Python state. */
static PyObject *py_clear_code(PyObject *self, PyObject *c) {
    PyCodeObject *code = arg_code(c);
    if (code == NULL) return NULL;
    Extra *ex = jf_get_extra(code, 0);
    if (ex != NULL) jf_extra_clear(ex);
    Py_RETURN_NONE;
}

/* Borrows code; returns the Python-side state object (new ref) or None. */
static PyObject *py_get_code_state(PyObject *self, PyObject *c) {
    PyCodeObject *code = arg_code(c);
    if (code == NULL) return NULL;
    Extra *ex = jf_get_extra(code, 0);
    PyObject *st = (ex && ex->pystate) ? ex->pystate : Py_None;
    Py_INCREF(st);
    return st;
}

/* Borrows args; stores a new reference to the state object (None clears). */
static PyObject *py_set_code_state(PyObject *self, PyObject *args) {
    PyObject *c, *state;
    if (!PyArg_ParseTuple(args, "OO", &c, &state)) return NULL;
    PyCodeObject *code = arg_code(c);
    if (code == NULL) return NULL;
    Extra *ex = jf_get_extra(code, 1);
    if (ex == NULL) return NULL;
    PyObject *old = ex->pystate;
    if (state == Py_None) {
        ex->pystate = NULL;
    } else {
        Py_INCREF(state);
        ex->pystate = state;
    }
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyMethodDef code_state_methods[] = {
    {"set_code_strategy", py_set_code_strategy, METH_VARARGS,
     "set_code_strategy(code, cur, rec): actions for this frame and for frames it calls."},
    {"get_code_strategy", py_get_code_strategy, METH_O, "get_code_strategy(code) -> (cur, rec)."},
    {"code_entries", py_code_entries, METH_O,
     "code_entries(code) -> [(guard, replacement, owner)], most recently hit first."},
    {"clear_code", py_clear_code, METH_O, "Drop a code object's entries, strategy and state."},
    {"get_code_state", py_get_code_state, METH_O, "The Python-side state stored with a code object."},
    {"set_code_state", py_set_code_state, METH_VARARGS, "set_code_state(code, obj)."},
    {NULL, NULL, 0, NULL},
};

int jf_code_state_init(PyObject *m) {
    return PyModule_AddFunctions(m, code_state_methods);
}
