/* janus_frame._C: turning a thread off when it exits (split from
 * eval_frame.c; the two share what hook.h declares). */
#include "compat.h"
#include "hook.h"

/* A thread that ends with janus_frame on (e.g. every thread under
 * JANUS_FRAME=1) would stay counted in active_threads forever, keeping the
 * hook installed. A small object stored in the thread's state dict is
 * destroyed when the thread's state is cleared, in that thread, with the GIL
 * held: its deallocator turns the thread off. */
typedef struct {
    PyObject_HEAD
    unsigned long thread; /* the watched thread */
} ThreadExitWatch;

static void thread_exit_watch_dealloc(PyObject *self) {
    /* At finalization (or after fork) another thread may clear this state:
     * only the watched thread's own exit turns its callback off. */
    if (((ThreadExitWatch *)self)->thread == PyThread_get_thread_ident()) jf_thread_exited();
    PyObject_Free(self);
}

PyTypeObject JF_ThreadExitWatch_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "janus_frame._C.ThreadExitWatch",
    .tp_basicsize = sizeof(ThreadExitWatch),
    .tp_dealloc = thread_exit_watch_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
};

/* Puts a ThreadExitWatch in the current thread's state dict (once per thread).
 * Returns 0 when watched, -1 when not: an error leaves the thread unwatched
 * (documented leak of one active_threads count) and any pending exception
 * untouched. */
int jf_watch_thread_exit(void) {
    int ok = -1;
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *d = PyThreadState_GetDict(); /* borrowed */
    PyObject *w = d ? (PyObject *)PyObject_New(ThreadExitWatch, &JF_ThreadExitWatch_Type) : NULL;
    if (w != NULL) {
        ((ThreadExitWatch *)w)->thread = PyThread_get_thread_ident();
        if (PyDict_SetItemString(d, "janus_frame.thread_exit_watch", w) == 0) ok = 0;
        Py_DECREF(w);
    }
    PyErr_Clear();
    PyErr_Restore(et, ev, tb);
    return ok;
}
