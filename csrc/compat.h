/* Every CPython-version gate of the frame hook lives in this header.
 *
 * The hook needs four things from the interpreter's private frame layout:
 * the code object of a frame, its function, its argument slots, and whether
 * it has started executing. Supporting 3.12+ means adding a branch for each
 * macro below (3.12: f_code -> f_code still, frame must be cleared by the
 * eval function; 3.13: f_executable), not rewriting eval_frame.c.
 */
#ifndef JANUS_FRAME_COMPAT_H
#define JANUS_FRAME_COMPAT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "janus_frame's frame hook supports CPython 3.11 only; add this version's gates to csrc/compat.h"
#endif

#define Py_BUILD_CORE
#include <internal/pycore_frame.h>
#include <internal/pycore_code.h>
#include <internal/pycore_interp.h> /* PyInterpreterState.eval_frame */
#undef Py_BUILD_CORE

typedef struct _PyInterpreterFrame JF_Frame;

#define JF_FRAME_CODE(f) ((f)->f_code)
#define JF_FRAME_FUNC(f) ((PyObject *)(f)->f_func)
#define JF_FRAME_GLOBALS(f) ((f)->f_globals)
#define JF_FRAME_LOCALSPLUS(f) ((f)->localsplus)

/* A frame whose first instruction has not run yet. Generators resumed by
 * send()/next() re-enter the eval function with a later prev_instr. */
#define JF_FRAME_NOT_STARTED(f) ((f)->prev_instr < _PyCode_CODE((f)->f_code))

/* Direct read of a code object's extra slot without the bounds-checked API
 * call: this runs for every intercepted frame. The layout mirrors the private
 * _PyCodeObjectExtra of Objects/codeobject.c in 3.11. */
typedef struct {
    Py_ssize_t ce_size;
    void *ce_extras[1];
} JF_CodeExtra;

static inline void *jf_code_get_extra(PyCodeObject *code, Py_ssize_t index) {
    JF_CodeExtra *ce = (JF_CodeExtra *)code->co_extra;
    if (ce == NULL || index >= ce->ce_size) return NULL;
    return ce->ce_extras[index];
}

#define JF_REQUEST_CODE_EXTRA_INDEX(freefunc) _PyEval_RequestCodeExtraIndex(freefunc)
#define JF_SET_CODE_EXTRA(code, index, p) _PyCode_SetExtra((PyObject *)(code), (index), (p))

#define JF_GET_EVAL_FRAME(interp) _PyInterpreterState_GetEvalFrameFunc(interp)
/* The installed eval function, read directly (NULL means the default one). */
#define JF_INTERP_EVAL_FRAME(interp) ((interp)->eval_frame)
/* 3.13: Py_IsFinalizing() */
#define JF_IS_FINALIZING() _Py_IsFinalizing()

#define JF_SET_EVAL_FRAME(interp, fn) _PyInterpreterState_SetEvalFrameFunc((interp), (fn))

#endif
