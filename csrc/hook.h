/* What the parts of janus_frame._C share (eval_frame.c: the hook and the
 * cache; wrapper.c: the callable wrapper; threads.c: thread exit). */
#ifndef JANUS_FRAME_HOOK_H
#define JANUS_FRAME_HOOK_H

#include "compat.h"

/* Steals new_cb (may be NULL: off); returns the thread's previous callback
 * as a new (stolen) reference, possibly NULL. Installs or removes the hook as
 * the number of threads that need it changes. */
PyObject *jf_swap_callback(PyObject *new_cb);

/* 1 if the current thread runs in the interpreter that imported janus_frame
 * (the only one where it turns on), else 0. */
int jf_in_home_interpreter(void);

/* janus_frame._C.Wrapper (wrapper.c) */
extern PyTypeObject JF_Wrapper_Type;

/* threads.c: watch the current thread's exit (0: watched, -1: could not);
 * eval_frame.c: what the exit does. */
extern PyTypeObject JF_ThreadExitWatch_Type;
int jf_watch_thread_exit(void);
void jf_thread_exited(void);

/* guards.c: the guard helpers (type_lookup, class_attrs_ok, modules_plain)
 * added to module m. Returns 0, or -1 with an exception set. */
int jf_guards_init(PyObject *m);

/* code_state.c: the per-code cache accessors (set_code_strategy, code_entries,
 * get/set_code_state ...) added to module m. Returns 0, or -1. */
int jf_code_state_init(PyObject *m);

#endif
