/* Guard helpers: the checks a generated guard makes on classes and modules,
 * done in C because a cached entry runs them on every call.
 *
 * type_lookup(cls, name): what an attribute lookup through cls's MRO finds
 *     (the raw class-dict entry), or MISSING. The trace resolves every
 *     attribute it inlines with it.
 * class_attrs_ok(specs): every (class, name) resolution the trace relied on
 *     still finds the same object. Fast path: the class's version tag is the
 *     one it had when traced (CPython gives a type a new tag whenever the
 *     dict of the type or of any base changes, or __bases__ is assigned).
 *     Slow path, after the class changed: the resolutions are looked up
 *     again; when all still hold (a counter on the class changed, not what
 *     the trace read) the new tag is stored, so the next call is fast again.
 * modules_plain(mods, dicts): each nn.Module in mods has empty forward,
 *     forward-pre, backward and backward-pre hook dicts and no forward set on
 *     the instance; each dict in dicts (the global hook dicts) is empty.
 */
#include "compat.h"

static PyObject *missing;       /* the MISSING sentinel (strong, immortal for us) */
static PyObject *hook_names[4]; /* interned attribute names */
static PyObject *forward_name;
static PyObject *tag_probe;     /* a name looked up to make 3.11 assign a tag */

/* The valid version tag of t, or 0. Borrows t. */
static unsigned int valid_tag(PyTypeObject *t) {
#ifdef Py_TPFLAGS_VALID_VERSION_TAG
    if (!PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG)) return 0;
#endif
    return t->tp_version_tag;
}

/* Gives t a version tag if it has none; returns it (0: CPython gives none,
 * e.g. after too many changes of the class). Borrows t. */
static unsigned int assign_tag(PyTypeObject *t) {
    unsigned int tag = valid_tag(t);
    if (tag != 0) return tag;
#if JF_PY312
    if (!PyUnstable_Type_AssignVersionTag(t)) return 0;
#else
    /* a cacheable-name lookup assigns the tag (3.11 has no API for it) */
    (void)_PyType_Lookup(t, tag_probe);
#endif
    return valid_tag(t);
}

/* Borrows t, name, start (NULL: search from t). Returns a borrowed
 * reference to what the MRO lookup finds, or NULL (absent). With start,
 * the search begins after start in t's MRO, as super(start, obj) does. */
static PyObject *mro_lookup(PyTypeObject *t, PyObject *name, PyObject *start) {
    if (start == NULL || start == Py_None) return _PyType_Lookup(t, name);
    PyObject *mro = t->tp_mro;
    if (mro == NULL || !PyTuple_Check(mro)) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(mro), i = 0;
    while (i < n && PyTuple_GET_ITEM(mro, i) != start) i++;
    for (i++; i < n; i++) {
        PyObject *base = PyTuple_GET_ITEM(mro, i);
#if JF_PY312
        PyObject *dict = PyType_GetDict((PyTypeObject *)base); /* static types: tp_dict NULL */
#else
        PyObject *dict = Py_XNewRef(((PyTypeObject *)base)->tp_dict);
#endif
        if (dict == NULL) continue;
        /* borrowed from the class's dict, which the class keeps alive */
        PyObject *v = PyDict_GetItemWithError(dict, name);
        Py_DECREF(dict);
        if (v != NULL || PyErr_Occurred()) return v;
    }
    return NULL;
}

/* type_lookup(cls, name) -> the raw MRO entry (new ref) or MISSING. */
static PyObject *py_type_lookup(PyObject *self, PyObject *args) {
    PyObject *cls, *name, *start = NULL;
    if (!PyArg_ParseTuple(args, "O!U|O", &PyType_Type, &cls, &name, &start)) return NULL;
    PyObject *v = mro_lookup((PyTypeObject *)cls, name, start);
    if (v == NULL) {
        if (PyErr_Occurred()) return NULL;
        v = missing;
    }
    return Py_NewRef(v);
}

/* type_tag(cls) -> int: cls's version tag, assigned now if needed (0: none). */
static PyObject *py_type_tag(PyObject *self, PyObject *cls) {
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "type_tag() takes a class");
        return NULL;
    }
    return PyLong_FromUnsignedLong(assign_tag((PyTypeObject *)cls));
}

/* One spec: (cls, box, names, values, starts); box is a 1-item list holding
 * the tag the resolutions were checked under. Returns 1 (all hold), 0, or
 * -1 with an exception set. Borrows spec. */
static int spec_ok(PyObject *spec) {
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 5) goto bad;
    PyObject *cls = PyTuple_GET_ITEM(spec, 0), *box = PyTuple_GET_ITEM(spec, 1);
    PyObject *names = PyTuple_GET_ITEM(spec, 2), *values = PyTuple_GET_ITEM(spec, 3);
    PyObject *starts = PyTuple_GET_ITEM(spec, 4);
    if (!PyType_Check(cls) || !PyList_Check(box) || PyList_GET_SIZE(box) != 1 ||
        !PyTuple_Check(names) || !PyTuple_Check(values) || !PyTuple_Check(starts) ||
        PyTuple_GET_SIZE(values) != PyTuple_GET_SIZE(names) ||
        PyTuple_GET_SIZE(starts) != PyTuple_GET_SIZE(names))
        goto bad;
    PyTypeObject *t = (PyTypeObject *)cls;
    unsigned int tag = valid_tag(t);
    PyObject *want = PyList_GET_ITEM(box, 0);
    if (tag != 0 && PyLong_Check(want) && PyLong_AsUnsignedLong(want) == tag) return 1;
    if (PyErr_Occurred()) return -1;
    /* the class (or a base) changed since: do the resolutions still hold? */
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        PyObject *v = mro_lookup(t, PyTuple_GET_ITEM(names, i), PyTuple_GET_ITEM(starts, i));
        if (v == NULL && PyErr_Occurred()) return -1;
        if ((v == NULL ? missing : v) != PyTuple_GET_ITEM(values, i)) return 0;
    }
    PyObject *now = PyLong_FromUnsignedLong(assign_tag(t));
    if (now == NULL) return -1;
    PyList_SET_ITEM(box, 0, now); /* steals now */
    Py_DECREF(want);
    return 1;
bad:
    PyErr_SetString(PyExc_TypeError, "class_attrs_ok(): malformed spec");
    return -1;
}

/* class_attrs_ok(specs: tuple of specs) -> bool. */
static PyObject *py_class_attrs_ok(PyObject *self, PyObject *specs) {
    if (!PyTuple_Check(specs)) {
        PyErr_SetString(PyExc_TypeError, "class_attrs_ok() takes a tuple");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(specs); i++) {
        int ok = spec_ok(PyTuple_GET_ITEM(specs, i));
        if (ok < 0) return NULL;
        if (!ok) Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* 1 if the instance dict of m has empty hook dicts and no "forward", 0 if
 * not, -1 with an exception set. Borrows m. */
static int module_plain(PyObject *m) {
    PyObject *d = PyObject_GenericGetDict(m, NULL);
    if (d == NULL) {
        PyErr_Clear(); /* no instance dict: not a module as traced */
        return 0;
    }
    int ok = 0;
    if (!PyDict_Check(d)) goto done;
    for (int k = 0; k < 4; k++) {
        PyObject *h = PyDict_GetItemWithError(d, hook_names[k]);
        if (h == NULL) {
            if (PyErr_Occurred()) { ok = -1; goto done; }
            goto done;
        }
        if (!PyDict_Check(h) || PyDict_GET_SIZE(h) != 0) goto done;
    }
    ok = PyDict_Contains(d, forward_name);
    ok = ok < 0 ? -1 : !ok;
done:
    Py_DECREF(d);
    return ok;
}

/* modules_plain(mods: tuple, dicts: tuple) -> bool. */
static PyObject *py_modules_plain(PyObject *self, PyObject *args) {
    PyObject *mods, *dicts;
    if (!PyArg_ParseTuple(args, "O!O!", &PyTuple_Type, &mods, &PyTuple_Type, &dicts))
        return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(dicts); i++) {
        PyObject *d = PyTuple_GET_ITEM(dicts, i);
        if (!PyDict_Check(d) || PyDict_GET_SIZE(d) != 0) Py_RETURN_FALSE;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mods); i++) {
        int ok = module_plain(PyTuple_GET_ITEM(mods, i));
        if (ok < 0) return NULL;
        if (!ok) Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

PyMethodDef jf_guard_methods[] = {
    {"type_lookup", py_type_lookup, METH_VARARGS,
     "type_lookup(cls, name[, start]) -> what cls's MRO (after start) holds for name, or "
     "MISSING."},
    {"type_tag", py_type_tag, METH_O, "type_tag(cls) -> cls's version tag (0: none)."},
    {"class_attrs_ok", py_class_attrs_ok, METH_O,
     "class_attrs_ok(((cls, [tag], names, values, starts), ...)) -> the resolutions hold."},
    {"modules_plain", py_modules_plain, METH_VARARGS,
     "modules_plain(mods, dicts) -> no hooks and no instance forward on mods, dicts empty."},
    {NULL, NULL, 0, NULL},
};

/* Adds the helpers and MISSING to module m. Returns 0, or -1 with an
 * exception set. Borrows m. */
int jf_guards_init(PyObject *m) {
    static const char *names[4] = {"_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                                   "_backward_pre_hooks"};
    if (missing == NULL) {
        missing = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
        if (missing == NULL) return -1;
        for (int k = 0; k < 4; k++) {
            hook_names[k] = PyUnicode_InternFromString(names[k]);
            if (hook_names[k] == NULL) return -1;
        }
        forward_name = PyUnicode_InternFromString("forward");
        tag_probe = PyUnicode_InternFromString("__janus_frame_tag__");
        if (forward_name == NULL || tag_probe == NULL) return -1;
    }
    if (PyModule_AddFunctions(m, jf_guard_methods) < 0) return -1;
    return PyModule_AddObjectRef(m, "MISSING", missing);
}
