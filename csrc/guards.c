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
 * tree_same(state, roots) / tree_record(state, roots, mods): the module-tree
 *     fast path of a guard. tree_record, called after the guard's full check
 *     passed, pins mods (the nn.Modules the trace read, in order) with their
 *     types, instance dicts (with their items: 3.13 does not give a new
 *     version to an instance dict changed through its object's inline
 *     values) and the _modules, _parameters and _buffers dicts in them with
 *     their versions. tree_same is true while roots are the roots recorded,
 *     every instance dict holds the same items in the same order and no
 *     table changed (and no module's class or instance dict was replaced):
 *     every attribute, submodule and parameter reached through them is then
 *     the object the full check saw, so the checks that only depend on that
 *     need not run again.
 */
#include "compat.h"

#include <string.h>

static PyObject *missing;       /* the MISSING sentinel (strong, immortal for us) */
static PyObject *hook_names[4]; /* interned attribute names */
static PyObject *forward_name;
static PyObject *table_names[3]; /* the dicts of a module tree_record pins */
static PyObject *tag_probe;     /* a name looked up to make 3.11 assign a tag */

/* Gives t a version tag if it has none; returns it (0: CPython gives none,
 * e.g. after too many changes of the class). Borrows t. */
static unsigned int assign_tag(PyTypeObject *t) {
    unsigned int tag = jf_type_valid_tag(t);
    if (tag != 0) return tag;
    jf_type_request_tag(t, tag_probe);
    return jf_type_valid_tag(t);
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
        PyObject *dict = jf_type_dict((PyTypeObject *)base);
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
    unsigned int tag = jf_type_valid_tag(t);
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

/* state: a list of 6 items, [roots, mods, types, dicts, versions, items]
 * as tree_record left them, or all None. Borrows state. */
static int tree_state_ok(PyObject *state) {
    if (!PyList_Check(state) || PyList_GET_SIZE(state) != 6) {
        PyErr_SetString(PyExc_TypeError, "module tree state: a list of 6 items");
        return 0;
    }
    return 1;
}

/* 1 if dict d holds the keys and values of items (k0, v0, k1, v1, ...: the
 * same objects, in the same order), else 0. Borrows both. */
static int same_items(PyObject *d, PyObject *items) {
    Py_ssize_t n = PyTuple_GET_SIZE(items), pos = 0, i = 0;
    PyObject *k, *v;
    if (PyDict_GET_SIZE(d) * 2 != n) return 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        if (i + 1 >= n || PyTuple_GET_ITEM(items, i) != k || PyTuple_GET_ITEM(items, i + 1) != v)
            return 0;
        i += 2;
    }
    return i == n;
}

/* A new tuple (k0, v0, k1, v1, ...) of dict d, or NULL with an exception
 * set. Borrows d. */
static PyObject *items_of(PyObject *d) {
    PyObject *out = PyTuple_New(2 * PyDict_GET_SIZE(d)), *k, *v;
    Py_ssize_t pos = 0, i = 0;
    if (out == NULL) return NULL;
    while (PyDict_Next(d, &pos, &k, &v) && i + 1 < PyTuple_GET_SIZE(out)) {
        PyTuple_SET_ITEM(out, i, Py_NewRef(k));
        PyTuple_SET_ITEM(out, i + 1, Py_NewRef(v));
        i += 2;
    }
    return out;
}

/* Stores v (stolen) as item i of list l (borrowed, long enough), dropping
 * the old item. */
static void list_put(PyObject *l, Py_ssize_t i, PyObject *v) {
    PyObject *old = PyList_GET_ITEM(l, i);
    PyList_SET_ITEM(l, i, v);
    Py_XDECREF(old);
}

/* tree_same(state: list, roots: tuple) -> bool. */
static PyObject *py_tree_same(PyObject *self, PyObject *args) {
    PyObject *state, *roots;
    if (!PyArg_ParseTuple(args, "OO!", &state, &PyTuple_Type, &roots)) return NULL;
    if (!tree_state_ok(state)) return NULL;
    PyObject *want = PyList_GET_ITEM(state, 0), *mods = PyList_GET_ITEM(state, 1);
    PyObject *types = PyList_GET_ITEM(state, 2), *dicts = PyList_GET_ITEM(state, 3);
    PyObject *versions = PyList_GET_ITEM(state, 4), *items = PyList_GET_ITEM(state, 5);
    if (!PyTuple_Check(want)) Py_RETURN_FALSE; /* not recorded (yet) */
    Py_ssize_t n = PyTuple_GET_SIZE(want);
    if (PyTuple_GET_SIZE(roots) != n) Py_RETURN_FALSE;
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyTuple_GET_ITEM(roots, i) != PyTuple_GET_ITEM(want, i)) Py_RETURN_FALSE;
    const char *v = PyBytes_AS_STRING(versions);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(mods); i++) {
        PyObject *m = PyTuple_GET_ITEM(mods, i);
        if ((PyObject *)Py_TYPE(m) != PyTuple_GET_ITEM(types, i)) Py_RETURN_FALSE;
        PyObject *d = PyObject_GenericGetDict(m, NULL);
        if (d == NULL) {
            PyErr_Clear();
            Py_RETURN_FALSE;
        }
        Py_DECREF(d); /* (the pinned dict keeps it alive: only compared) */
        if (d != PyTuple_GET_ITEM(dicts, 4 * i)) Py_RETURN_FALSE;
        if (!same_items(d, PyTuple_GET_ITEM(items, i))) Py_RETURN_FALSE;
    }
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(dicts); j++) {
        if (j % 4 == 0) continue; /* an instance dict: its items are compared above */
        uint64_t was;
        memcpy(&was, v + sizeof(uint64_t) * j, sizeof(uint64_t));
        if (jf_dict_version(PyTuple_GET_ITEM(dicts, j)) != was) Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* tree_record(state: list, roots: tuple, mods: tuple) -> True (a module
 * whose dicts are not as expected leaves the state unrecorded: the full
 * check then runs at every call, as without this fast path). */
static PyObject *py_tree_record(PyObject *self, PyObject *args) {
    PyObject *state, *roots, *mods;
    if (!PyArg_ParseTuple(args, "OO!O!", &state, &PyTuple_Type, &roots, &PyTuple_Type, &mods))
        return NULL;
    if (!tree_state_ok(state)) return NULL;
    list_put(state, 0, Py_NewRef(Py_None)); /* unrecorded until complete */
    Py_ssize_t n = PyTuple_GET_SIZE(mods);
    PyObject *types = PyTuple_New(n), *dicts = PyTuple_New(4 * n), *versions = NULL;
    PyObject *items = PyTuple_New(n);
    if (types == NULL || dicts == NULL || items == NULL) goto error;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyTuple_GET_ITEM(mods, i);
        PyTuple_SET_ITEM(types, i, Py_NewRef((PyObject *)Py_TYPE(m)));
        PyObject *d = PyObject_GenericGetDict(m, NULL);
        if (d == NULL) {
            PyErr_Clear();
            goto unrecorded;
        }
        PyTuple_SET_ITEM(dicts, 4 * i, d); /* steals d */
        if (!PyDict_Check(d)) goto unrecorded;
        PyObject *its = items_of(d);
        if (its == NULL) goto error;
        PyTuple_SET_ITEM(items, i, its);
        for (int k = 0; k < 3; k++) {
            PyObject *t = PyDict_GetItemWithError(d, table_names[k]);
            if (t == NULL && PyErr_Occurred()) goto error;
            if (t == NULL || !PyDict_Check(t)) goto unrecorded;
            PyTuple_SET_ITEM(dicts, 4 * i + 1 + k, Py_NewRef(t));
        }
    }
    versions = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)sizeof(uint64_t) * 4 * n);
    if (versions == NULL) goto error;
    char *v = PyBytes_AS_STRING(versions);
    for (Py_ssize_t j = 0; j < 4 * n; j++) {
        uint64_t now = jf_dict_version(PyTuple_GET_ITEM(dicts, j));
        memcpy(v + sizeof(uint64_t) * j, &now, sizeof(uint64_t));
    }
    list_put(state, 1, Py_NewRef(mods));
    list_put(state, 2, types);
    list_put(state, 3, dicts);
    list_put(state, 4, versions);
    list_put(state, 5, items);
    list_put(state, 0, Py_NewRef(roots));
    Py_RETURN_TRUE;
unrecorded:
    Py_XDECREF(types);
    Py_XDECREF(dicts);
    Py_XDECREF(items);
    Py_RETURN_TRUE;
error:
    Py_XDECREF(types);
    Py_XDECREF(dicts);
    Py_XDECREF(items);
    return NULL;
}

PyMethodDef jf_guard_methods[] = {
    {"tree_same", py_tree_same, METH_VARARGS,
     "tree_same(state, roots) -> the module trees are as tree_record left them."},
    {"tree_record", py_tree_record, METH_VARARGS,
     "tree_record(state, roots, mods) -> True, after pinning mods and their dicts' versions."},
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
        static const char *tables[3] = {"_modules", "_parameters", "_buffers"};
        for (int k = 0; k < 3; k++) {
            table_names[k] = PyUnicode_InternFromString(tables[k]);
            if (table_names[k] == NULL) return -1;
        }
        tag_probe = PyUnicode_InternFromString("__janus_frame_tag__");
        if (forward_name == NULL || tag_probe == NULL) return -1;
    }
    if (PyModule_AddFunctions(m, jf_guard_methods) < 0) return -1;
    return PyModule_AddObjectRef(m, "MISSING", missing);
}
