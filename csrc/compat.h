/* Every CPython-version gate of the frame hook lives in this header.
 *
 * Supported: CPython 3.11, 3.12 and 3.13 with the GIL. Checked against the
 * installed headers of 3.11.7, 3.12.1 and 3.13.0 (Include/internal/
 * pycore_frame.h, cpython/code.h, cpython/pystate.h, cpython/ceval.h) and the
 * symbols libpython exports. What the hook needs, per version:
 *
 *                 3.11                 3.12                 3.13
 * frame's code    f_code               f_code (1st field)   f_executable (PyObject *)
 * its function    f_func               f_funcobj            f_funcobj
 * not started     prev_instr < code    prev_instr < code    instr_ptr == code
 * frame cleanup   by the caller        by the eval function (the callee): a
 *                 (_PyEval_Vector)     frame we do not evaluate is ours to
 *                                      clear and pop (JF_FRAME_DISCARD)
 * co_extra API    _PyCode_SetExtra     PyUnstable_Code_SetExtra (the old
 *                                      names are static inline wrappers)
 * finalizing      _Py_IsFinalizing     _Py_IsFinalizing     Py_IsFinalizing
 * pop a frame     (not needed)         our copy below       _PyThreadState_PopFrame
 *                                                           (exported from 3.13)
 *
 * Unchanged in all three: the eval-function signature (tstate, frame,
 * throwflag); _PyInterpreterState_Set/GetEvalFrameFunc (installing
 * _PyEval_EvalFrameDefault stores NULL); localsplus as PyObject *[] with the
 * arguments bound in its first slots (positional, keyword-only, *args,
 * **kwargs) when the eval function is entered; MAKE_CELL and COPY_FREE_VARS
 * are still instructions, so at that moment an argument that is also a cell
 * holds the raw value, other cell slots and every free-variable slot are
 * NULL (free variables are in the function's closure); the co_extra holder
 * layout {ce_size, ce_extras[]} (checked at import by jf_check_code_extra).
 *
 * Not supported, refused at build time: the free-threaded build (3.13t:
 * the per-code cache, the install counter and the direct co_extra read
 * assume the GIL), and any other minor version (3.14 turns localsplus and
 * f_executable into tagged stack references: every macro below changes).
 */
#ifndef JANUS_FRAME_COMPAT_H
#define JANUS_FRAME_COMPAT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030E0000
#error "janus_frame's frame hook supports CPython 3.11 to 3.13; add this version's gates to csrc/compat.h (and re-check the frame clear/pop copy below)"
#endif
#ifdef Py_GIL_DISABLED
#error "janus_frame's frame hook does not support the free-threaded build (3.13t) yet: use a regular CPython build"
#endif

#define JF_PY312 (PY_VERSION_HEX >= 0x030C0000)
#define JF_PY313 (PY_VERSION_HEX >= 0x030D0000)

#define Py_BUILD_CORE
#include <internal/pycore_frame.h>
#include <internal/pycore_code.h>
#undef Py_BUILD_CORE

typedef struct _PyInterpreterFrame JF_Frame;

/* Borrowed. */
#if JF_PY313
#define JF_FRAME_CODE(f) ((PyCodeObject *)(f)->f_executable)
#define JF_FRAME_FUNC(f) ((f)->f_funcobj)
#elif JF_PY312
#define JF_FRAME_CODE(f) ((f)->f_code)
#define JF_FRAME_FUNC(f) ((f)->f_funcobj)
#else
#define JF_FRAME_CODE(f) ((f)->f_code)
#define JF_FRAME_FUNC(f) ((PyObject *)(f)->f_func)
#endif
#define JF_FRAME_LOCALSPLUS(f) ((f)->localsplus)

/* A fresh frame of a call (owned by the thread, first instruction not run).
 * Generators resumed by send()/next()/throw() re-enter the eval function
 * with their own (generator-owned) frame, past the start. */
#if JF_PY313
#define JF_FRAME_NOT_STARTED(f)                                                               \
    ((f)->owner == FRAME_OWNED_BY_THREAD && (f)->instr_ptr == _PyCode_CODE(JF_FRAME_CODE(f)))
#else
#define JF_FRAME_NOT_STARTED(f)                                                               \
    ((f)->owner == FRAME_OWNED_BY_THREAD && (f)->prev_instr < _PyCode_CODE(JF_FRAME_CODE(f)))
#endif

/* ts->tracing > 0: we are inside a sys.settrace/setprofile (and, 3.12+,
 * sys.monitoring) callback. Same field in 3.11-3.13. */
#define JF_TSTATE_TRACING(ts) ((ts)->tracing > 0)

/* The thread's data-stack top (frames are bump-allocated there); tests
 * compare it before and after intercepted calls. Same field in 3.11-3.13. */
#define JF_DATASTACK_TOP(ts) ((void *)(ts)->datastack_top)

/* ------------------------------------------------------------------ */
/* Frames we do not evaluate (a cached replacement ran in their place).   */

#if JF_PY312
/* 3.12+: _PyEval_Vector pushes and initialises the frame, then hands it to
 * the eval function, which must clear and pop it (the default one does so on
 * exit). CPython's own routine for that (clear_thread_frame in ceval.c:
 * _PyFrame_ClearExceptCode, drop the code reference, _PyThreadState_PopFrame)
 * is not exported in 3.12 and only partly in 3.13, so this is the same
 * sequence for the one kind of frame we ever discard: a fresh function frame,
 * owned by the thread, never linked into the thread's frame chain (so never
 * visible to Python code and without a frame object), on top of the data
 * stack. jf_frame_discardable() checks exactly that before we intercept. */

/* Borrows ts and f (reads only). 1 if f may be discarded without running. */
static inline int jf_frame_discardable(PyThreadState *ts, JF_Frame *f) {
    return f->owner == FRAME_OWNED_BY_THREAD && f->frame_obj == NULL && f->f_locals == NULL &&
           (PyObject **)f + JF_FRAME_CODE(f)->co_framesize == ts->datastack_top;
}

#if JF_PY313
#define jf_threadstate_pop_frame _PyThreadState_PopFrame
#else
/* Python/pystate.c's _PyThreadState_PopFrame (3.12): rewind the data stack to
 * the frame's base; a frame at the base of a chunk frees the chunk (allocated
 * by the object arena allocator) and returns to the previous one, which
 * always exists because the root chunk's first slot is never handed out. */
static inline void jf_threadstate_pop_frame(PyThreadState *ts, JF_Frame *f) {
    PyObject **base = (PyObject **)f;
    _PyStackChunk *chunk = ts->datastack_chunk;
    if (base == &chunk->data[0]) {
        _PyStackChunk *prev = chunk->previous;
        ts->datastack_top = &prev->data[prev->top];
        ts->datastack_chunk = prev;
        ts->datastack_limit = (PyObject **)((char *)prev + prev->size);
        PyObjectArenaAllocator arena;
        PyObject_GetArenaAllocator(&arena);
        arena.free(arena.ctx, chunk, chunk->size);
    } else {
        ts->datastack_top = base;
    }
}
#endif

/* Steals every reference f holds (its slots, function and code) and pops f
 * off ts's data stack. f must satisfy jf_frame_discardable() and every frame
 * pushed above it must be gone. Destructors may run (any pending exception
 * is theirs to preserve, as in CPython). */
static inline void jf_frame_discard(PyThreadState *ts, JF_Frame *f) {
    PyCodeObject *code = JF_FRAME_CODE(f);
    assert(jf_frame_discardable(ts, f));
    /* As CPython: one C recursion level for the destructors. */
    ts->c_recursion_remaining--;
    /* Hide the slots from anything that might look while they die. */
    int n = f->stacktop;
    f->stacktop = 0;
    for (int i = 0; i < n; i++) Py_XDECREF(f->localsplus[i]);
    Py_DECREF(JF_FRAME_FUNC(f));
    Py_DECREF(code);
    ts->c_recursion_remaining++;
    jf_threadstate_pop_frame(ts, f);
}
#else
/* 3.11: _PyEval_Vector clears and pops the frame after the eval function
 * returns, whether it ran or not. */
#define jf_frame_discardable(ts, f) 1
#define jf_frame_discard(ts, f) ((void)0)
#endif

/* ------------------------------------------------------------------ */
/* co_extra                                                              */

/* Direct read of a code object's extra slot without the bounds-checked API
 * call: this runs for every intercepted frame. The layout mirrors the private
 * _PyCodeObjectExtra of Objects/codeobject.c (unchanged in 3.11-3.13; the
 * module checks it against the API at import, jf_check_code_extra). */
typedef struct {
    Py_ssize_t ce_size;
    void *ce_extras[1];
} JF_CodeExtra;

static inline void *jf_code_get_extra(PyCodeObject *code, Py_ssize_t index) {
    JF_CodeExtra *ce = (JF_CodeExtra *)code->co_extra;
    if (ce == NULL || index >= ce->ce_size) return NULL;
    return ce->ce_extras[index];
}

#if JF_PY312
#define JF_REQUEST_CODE_EXTRA_INDEX(freefunc) PyUnstable_Eval_RequestCodeExtraIndex(freefunc)
#define JF_SET_CODE_EXTRA(code, index, p) PyUnstable_Code_SetExtra((PyObject *)(code), (index), (p))
#define JF_API_GET_CODE_EXTRA(code, index, pp) PyUnstable_Code_GetExtra((PyObject *)(code), (index), (pp))
#else
#define JF_REQUEST_CODE_EXTRA_INDEX(freefunc) _PyEval_RequestCodeExtraIndex(freefunc)
#define JF_SET_CODE_EXTRA(code, index, p) _PyCode_SetExtra((PyObject *)(code), (index), (p))
#define JF_API_GET_CODE_EXTRA(code, index, pp) _PyCode_GetExtra((PyObject *)(code), (index), (pp))
#endif

/* ------------------------------------------------------------------ */
/* Installation and interpreter state                                    */

/* The installed eval function of an interpreter (the default one when none
 * is installed). Same exported API in 3.11-3.13. */
#define JF_GET_EVAL_FRAME(interp) _PyInterpreterState_GetEvalFrameFunc(interp)
#define JF_SET_EVAL_FRAME(interp, fn) _PyInterpreterState_SetEvalFrameFunc((interp), (fn))

#if JF_PY313
#define JF_IS_FINALIZING() Py_IsFinalizing()
#else
#define JF_IS_FINALIZING() _Py_IsFinalizing()
#endif

/* ------------------------------------------------------------------ */
/* Class version tags and dicts (the guard helpers, guards.c)            */

/* The valid version tag of t, or 0. Borrows t. 3.11 and 3.12 mark a valid
 * tag with Py_TPFLAGS_VALID_VERSION_TAG; 3.13 no longer sets that flag (it
 * stays clear on every class), a tag of 0 is the invalid one there. */
static inline unsigned int jf_type_valid_tag(PyTypeObject *t) {
#if JF_PY313
    return t->tp_version_tag;
#else
    return PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG) ? t->tp_version_tag : 0;
#endif
}

/* Asks CPython to give t a version tag (it may refuse, e.g. after too many
 * changes of the class). probe: an interned name, looked up on 3.11, which
 * has no API for it (a lookup of a cacheable name assigns the tag). */
static inline void jf_type_request_tag(PyTypeObject *t, PyObject *probe) {
#if JF_PY312
    (void)probe;
    (void)PyUnstable_Type_AssignVersionTag(t);
#else
    (void)_PyType_Lookup(t, probe);
#endif
}

/* A new reference to the dict of class t, or NULL (a static type's tp_dict
 * is NULL from 3.12: PyType_GetDict finds its per-interpreter dict). */
static inline PyObject *jf_type_dict(PyTypeObject *t) {
#if JF_PY312
    return PyType_GetDict(t);
#else
    return Py_XNewRef(t->tp_dict);
#endif
}

/* The version of dict d. CPython 3.11 to 3.13 give a dict a new version,
 * unique in the process, whenever it changes (an item added, deleted, set to
 * another object, the dict cleared); 3.12 and 3.13 keep watcher bits in its
 * low bits and mark the field deprecated, 3.14 stops counting (compat gates
 * refuse it above). Borrows d, which must be a dict. */
static inline uint64_t jf_dict_version(PyObject *d) {
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    return ((PyDictObject *)d)->ma_version_tag;
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
}

#endif
