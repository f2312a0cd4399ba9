/* janus_frame._C: the PEP 523 frame hook and the per-code cache.
 *
 * In:  every Python frame the interpreter is about to run while some thread
 *      has janus_frame active.
 * Out: the frame runs as usual (chained to the eval function installed before
 *      ours), or a cached replacement function runs in its place and its
 *      result is the frame's result, or -- on a cache miss -- the Python
 *      callback decides.
 *
 * Only interception and the cache fast path live here; every decision is made
 * in Python (janus_frame.hook).
 *
 * Calling convention shared with Python. A code object with A argument slots
 * (positional + keyword-only + *args + **kwargs) has its arguments already
 * bound in the first A slots of the frame's localsplus when the eval function
 * is entered. Guards and replacements are plain functions taking exactly those
 * A values positionally, so a hit is one vectorcall on the frame's own slot
 * array: no tuple, no dict, no copy. They run with the frame function's
 * globals and closure (cells and free variables reach them that way): the
 * cache stores copies detached from any globals and binds each call to the
 * frame's function, so one entry serves every closure and every globals dict
 * sharing the code object, and the cache never keeps user globals alive.
 * A replacement's own code is marked SKIP for itself only (frames it calls
 * are still candidates) and is never handed to another hook.
 *
 * Guards and the callback run hidden from every hook (our own and any other
 * installed above ours); see call_hidden(). A frame we do not evaluate (a
 * hit, or an error from a guard or the callback) is cleaned up as the
 * interpreter expects: on 3.11 the caller of the eval function clears and
 * pops it; from 3.12 that is the eval function's job, done by
 * jf_frame_discard() (compat.h) after the replacement has returned. Frames
 * we could not discard that way are never intercepted.
 *
 * Frames never intercepted (passed to the eval function below ours): a
 * thrown-into frame (throw_flag), non-function code (module, class body),
 * generators and coroutines (their first call and every resumption), frames
 * run from inside a trace, profile or sys.monitoring callback
 * (tstate->tracing), and any frame of an interpreter other than the one
 * that imported janus_frame (it owns a per-interpreter extra index and eval
 * function; other interpreters run natively).
 *
 * Chaining with another eval-frame user (e.g. TorchDynamo). We install on top
 * of whatever function is installed and pass frames we do not take to it. The
 * hook on top owns its region: a frame handed to us by a hook above ours is
 * passed through, not compiled (that hook saw it first and may have
 * transformed it), so while such a hook is installed above ours no thread's
 * frames are intercepted by us -- except inside our wrappers, which reinstall
 * us on top for their call. Known limit: the protocol has no registry, each
 * user remembers one "previous" function; install/uninstall in non-LIFO
 * order across two users (possible with several threads, or disable() inside
 * another JIT's region inside ours) can leave the other user's function
 * installed after it thinks it has removed itself. Results stay correct; the
 * cost is its idle overhead until its next activation.
 *
 * Per-thread state (__thread, initial-exec model so a read is one load). It
 * is keyed by OS thread, not by PyThreadState: an OS thread that also runs
 * a thread state of another interpreter shares it, which is harmless because
 * the hook is only ever installed in janus_frame's own interpreter.
 *   callback == NULL   janus_frame off in this thread: pass straight through
 *   callback == False  run-only: use cached entries, never compile
 *   callback == f      compile on a miss by calling f(func, args_tuple)
 */
#include "compat.h"
#include "hook.h"
#include "cache.h"
#include <stddef.h>
#include <stdint.h>
#include <structmember.h>


typedef struct {
    PyObject *callback; /* strong; see the header comment */
    int busy;           /* a guard or the callback is running: intercept nothing */
    JF_Frame *passing;  /* frame handed to the previous eval function (cycle guard) */
    int exit_watch;     /* a ThreadExitWatch sits in this thread's state dict */
} TState;

static __thread TState tls __attribute__((tls_model("initial-exec")));

static Py_ssize_t extra_index = -1;
/* The interpreter that imported us: the extra index and the installed eval
 * function are per interpreter, so janus_frame only ever turns on there. */
static PyInterpreterState *home_interp = NULL;
static uint64_t global_epoch = 1;
static Py_ssize_t active_threads = 0;
static _PyFrameEvalFunction previous_eval = NULL;

static PyObject *eval_frame_hook(PyThreadState *ts, JF_Frame *frame, int throw_flag);

/* ------------------------------------------------------------------ */
/* Installation: per interpreter, chained, present only while needed.  */

int jf_in_home_interpreter(void) { return PyInterpreterState_Get() == home_interp; }

static void update_install(void) {
    PyInterpreterState *interp = home_interp;
    _PyFrameEvalFunction cur = JF_GET_EVAL_FRAME(interp);
    if (active_threads > 0) {
        if (cur != eval_frame_hook) {
            /* Another hook may already call us as its previous function; the
             * per-frame cycle guard makes chaining on top of it safe. */
            previous_eval = cur;
            JF_SET_EVAL_FRAME(interp, eval_frame_hook);
        }
    } else if (cur == eval_frame_hook) {
        /* Only remove ourselves when on top: a hook chained above us keeps
         * calling us, and we then pass every frame through. */
        JF_SET_EVAL_FRAME(interp, previous_eval);
        previous_eval = NULL;
    }
}

static void watch_thread_exit(void);

/* Steals new_cb (may be NULL); returns the previous callback as a new
 * (stolen) reference, possibly NULL. */
PyObject *jf_swap_callback(PyObject *new_cb) {
    PyObject *old = tls.callback;
    tls.callback = new_cb;
    if ((old == NULL) != (new_cb == NULL)) {
        active_threads += new_cb ? 1 : -1;
        update_install();
        if (new_cb != NULL && !tls.exit_watch) watch_thread_exit();
    }
    return old;
}

/* Called (by threads.c) when a thread whose callback may be set exits:
 * turns it off so active_threads stays exact. */
void jf_thread_exited(void) {
    tls.exit_watch = 0;
    if (tls.callback != NULL) {
        PyObject *old = jf_swap_callback(NULL);
        /* During finalization the compiler object may no longer be safe to
         * destroy; leaking one reference at exit is harmless. */
        if (!JF_IS_FINALIZING()) Py_XDECREF(old);
    }
}

static void watch_thread_exit(void) {
    if (jf_watch_thread_exit() == 0) tls.exit_watch = 1;
}

/* ------------------------------------------------------------------ */
/* Per-code state in co_extra.                                          */

static void entries_free(Entry *e) {
    while (e) {
        Entry *next = e->next;
        Py_DECREF(e->guard);
        Py_DECREF(e->replacement);
        Py_DECREF(e->owner);
        PyMem_Free(e);
        e = next;
    }
}

void jf_extra_update_fast(Extra *ex) {
    if (ex->cur_action == ACT_SKIP && ex->rec_action == ACT_DEFAULT)
        ex->fast = ex->is_replacement ? FAST_DEFAULT : FAST_PASS;
    else
        ex->fast = FAST_NONE;
}

void jf_extra_clear(Extra *ex) {
    Entry *head = ex->head;
    PyObject *st = ex->pystate;
    ex->head = NULL;
    ex->pystate = NULL;
    ex->cur_action = ACT_DEFAULT;
    ex->rec_action = ACT_DEFAULT;
    ex->is_replacement = 0;
    ex->fast = FAST_NONE;
    ex->epoch = global_epoch;
    ex->version++;
    /* Drop references last: destructors may run arbitrary code. */
    entries_free(head);
    Py_XDECREF(st);
}

static void extra_free(void *p) {
    if (p == NULL) return;
    Extra *ex = (Extra *)p;
    entries_free(ex->head);
    Py_XDECREF(ex->pystate);
    PyMem_Free(ex);
}

/* Borrowed code; returns the code's Extra (created on demand) or NULL with
 * an exception set. */
Extra *jf_get_extra(PyCodeObject *code, int create) {
    Extra *ex = (Extra *)jf_code_get_extra(code, extra_index);
    if (ex != NULL) {
        if (ex->epoch != global_epoch) jf_extra_clear(ex);
        return ex;
    }
    if (!create) return NULL;
    ex = (Extra *)PyMem_Calloc(1, sizeof(Extra));
    if (ex == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    ex->epoch = global_epoch;
    if (JF_SET_CODE_EXTRA(code, extra_index, ex) < 0) {
        PyMem_Free(ex);
        return NULL;
    }
    return ex;
}

static inline Py_ssize_t frame_nargs(PyCodeObject *code) {
    int flags = code->co_flags;
    return code->co_argcount + code->co_kwonlyargcount + ((flags & CO_VARARGS) != 0) +
           ((flags & CO_VARKEYWORDS) != 0);
}

/* Borrowed fn (a function whose code follows the calling convention) and
 * frame_func; returns a new reference to fn, or to a copy bound to
 * frame_func's globals and closure when those differ. */
static PyObject *bind_to_frame(PyObject *fn, PyObject *frame_func) {
    PyFunctionObject *f = (PyFunctionObject *)fn;
    PyFunctionObject *ff = (PyFunctionObject *)frame_func;
    PyCodeObject *code = (PyCodeObject *)f->func_code;
    int needs_closure = code->co_nfreevars > 0;
    if (f->func_globals == ff->func_globals &&
        (!needs_closure || f->func_closure == ff->func_closure)) {
        Py_INCREF(fn);
        return fn;
    }
    PyObject *nf = PyFunction_NewWithQualName((PyObject *)code, ff->func_globals, f->func_qualname);
    if (nf == NULL) return NULL;
    if (needs_closure && PyFunction_SetClosure(nf, ff->func_closure) < 0) {
        Py_DECREF(nf);
        return NULL;
    }
    return nf;
}

/* ------------------------------------------------------------------ */
/* Running frames.                                                      */

/* Runs the frame with the eval function installed before ours. Borrows frame;
 * returns the frame's result (new ref) or NULL with an exception set. */
static inline PyObject *pass_to(_PyFrameEvalFunction prev, PyThreadState *ts, JF_Frame *frame,
                               int throw_flag) {
    if (prev == NULL || prev == _PyEval_EvalFrameDefault)
        return _PyEval_EvalFrameDefault(ts, frame, throw_flag);
    /* Another eval-frame user is below us; if it chains back to us for the
     * same frame (both installed on top of each other), the cycle guard at
     * the top of eval_frame_hook sends the frame to the default evaluator. */
    JF_Frame *saved = tls.passing;
    tls.passing = frame;
    PyObject *r = prev(ts, frame, throw_flag);
    tls.passing = saved;
    return r;
}

static inline PyObject *pass_through(PyThreadState *ts, JF_Frame *frame, int throw_flag) {
    return pass_to(previous_eval, ts, frame, throw_flag);
}

/* Applies a recursive action for the duration of a call. Returns 1 if the
 * thread's callback was swapped; *saved then owns the previous callback. */
static inline int push_action(int rec, PyObject **saved) {
    if (rec == ACT_DEFAULT) return 0;
    if (rec == ACT_SKIP) {
        /* Turning the thread off may uninstall the hook altogether when no
         * other thread needs it: the region then runs at native speed. */
        *saved = jf_swap_callback(NULL);
    } else {
        Py_INCREF(Py_False);
        *saved = jf_swap_callback(Py_False);
    }
    return 1;
}

static inline void pop_action(PyObject *saved) {
    PyObject *cur = jf_swap_callback(saved);
    Py_XDECREF(cur);
}

/* pass_through under the recursive action rec. Borrows frame; returns the
 * frame's result (new ref) or NULL with an exception set. */
static PyObject *run_native(int rec, PyThreadState *ts, JF_Frame *frame, int throw_flag) {
    PyObject *saved = NULL;
    /* Read before push_action: turning the thread off may uninstall us and
     * forget the previous eval function, which this frame must still get. */
    _PyFrameEvalFunction prev = previous_eval;
    int pushed = push_action(rec, &saved);
    PyObject *r = pass_to(prev, ts, frame, throw_flag);
    if (pushed) pop_action(saved);
    return r;
}

/* Calls fn(args) (both borrowed; returns a new reference or NULL) with
 * janus_frame's own Python work hidden from every eval-frame hook: our hook
 * sees st->busy and evaluates natively, and when another hook is installed
 * above ours (e.g. TorchDynamo's) the interpreter's eval function is set to
 * the default one for the duration, so that hook does not trace or compile
 * our guards and our compiler. While hidden, other threads are not
 * intercepted either (they run natively, which is always correct); the
 * function is restored only if nobody changed it meanwhile. */
static PyObject *call_hidden(PyThreadState *ts, PyObject *fn, PyObject *const *args,
                             Py_ssize_t nargs) {
    PyInterpreterState *interp = ts->interp;
    _PyFrameEvalFunction top = JF_GET_EVAL_FRAME(interp);
    int swapped = (top != eval_frame_hook && top != _PyEval_EvalFrameDefault);
    if (swapped) JF_SET_EVAL_FRAME(interp, _PyEval_EvalFrameDefault);
    int was_busy = tls.busy;
    tls.busy = 1;
    PyObject *r = PyObject_Vectorcall(fn, args, nargs, NULL);
    tls.busy = was_busy;
    if (swapped && JF_GET_EVAL_FRAME(interp) == _PyEval_EvalFrameDefault)
        JF_SET_EVAL_FRAME(interp, top);
    return r;
}

/* Steals fn; borrows args. Returns the replacement's result (new ref). */
static PyObject *run_replacement(PyObject *fn, PyObject *const *args, Py_ssize_t nargs, int rec) {
    PyObject *saved = NULL;
    int pushed = push_action(rec, &saved);
    PyObject *r = PyObject_Vectorcall(fn, args, nargs, NULL);
    if (pushed) pop_action(saved);
    Py_DECREF(fn);
    return r;
}

/* Borrows fn and orig. Returns 0 if fn is a Python function following the
 * calling convention for orig's frames, else -1 with TypeError set. */
static int check_convention(PyObject *fn, const char *what, PyCodeObject *orig) {
    if (!PyFunction_Check(fn)) {
        PyErr_Format(PyExc_TypeError,
                     "janus_frame: the frame callback returned a %s that is not a Python "
                     "function (got %.100s)",
                     what, Py_TYPE(fn)->tp_name);
        return -1;
    }
    PyCodeObject *c = (PyCodeObject *)PyFunction_GET_CODE(fn);
    if (c == orig && what[0] == 'r') {
        /* Calling it would re-enter this very cache entry forever. */
        PyErr_Format(PyExc_TypeError,
                     "janus_frame: the replacement for %U must not be the frame's own code "
                     "object (return None to run the frame natively)",
                     orig->co_qualname);
        return -1;
    }
    Py_ssize_t want = frame_nargs(orig);
    if (c->co_argcount != want || c->co_kwonlyargcount != 0 ||
        (c->co_flags & (CO_VARARGS | CO_VARKEYWORDS))) {
        PyErr_Format(PyExc_TypeError,
                     "janus_frame: %s for %U must take exactly %zd positional arguments "
                     "(the frame's argument slots), got a function taking %d",
                     what, orig->co_qualname, want, c->co_argcount);
        return -1;
    }
    if (c->co_nfreevars != 0 && c->co_nfreevars != orig->co_nfreevars) {
        PyErr_Format(PyExc_TypeError,
                     "janus_frame: %s for %U must have no free variables or the frame "
                     "code's %d, got %d",
                     what, orig->co_qualname, orig->co_nfreevars, c->co_nfreevars);
        return -1;
    }
    return 0;
}

/* Moves e to the front of ex's list (most recently hit first). The
 * predecessor is searched afresh: while our guard ran, another thread may
 * have reordered the list (reordering does not bump the version, so that
 * concurrent hits do not force each other to recompile). */
static void mru_move(Extra *ex, Entry *e) {
    for (Entry **pp = &ex->head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            e->next = ex->head;
            ex->head = e;
            return;
        }
    }
}

/* Holds __name__ only: the globals of every function stored in the cache. */
static PyObject *detached_globals = NULL;

/* Borrows fn (a checked Python function); returns a new reference to a copy
 * of it bound to detached_globals, without closure, sharing fn's __dict__.
 *
 * Why: the cache lives in the code object's extra slot, which the cycle
 * collector cannot see. A cached function holding the user's globals would
 * close an invisible cycle (code -> entry -> globals -> function -> code)
 * and keep every dynamically created function (exec, notebooks) alive
 * forever. Every call binds the frame's own globals and closure anyway. */
static PyObject *detach(PyObject *fn) {
    PyFunctionObject *f = (PyFunctionObject *)fn;
    PyObject *nf = PyFunction_NewWithQualName(f->func_code, detached_globals, f->func_qualname);
    if (nf == NULL) return NULL;
    if (f->func_dict != NULL) {
        Py_INCREF(f->func_dict);
        ((PyFunctionObject *)nf)->func_dict = f->func_dict;
    }
    return nf;
}

/* Borrows guard, replacement and owner. Adds an entry at the front of ex for
 * detached copies of (guard, replacement) owned by owner (new reference).
 * Returns 0, or -1 with an exception set. */
static int add_entry(Extra *ex, PyObject *guard, PyObject *replacement, PyObject *owner) {
    Entry *e = (Entry *)PyMem_Calloc(1, sizeof(Entry));
    if (e == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    e->guard = detach(guard);
    e->replacement = e->guard ? detach(replacement) : NULL;
    if (e->replacement == NULL) {
        Py_XDECREF(e->guard);
        PyMem_Free(e);
        return -1;
    }
    Py_INCREF(owner);
    e->owner = owner;
    e->next = ex->head;
    ex->head = e;
    ex->version++;
    return 0;
}

/* The replacement's own frame must run as written: mark its code skipped
 * for itself only, so frames it calls are still candidates. */
/* Borrows replacement. Returns 0, or -1 with an exception set. */
static int mark_replacement_code(PyObject *replacement) {
    PyCodeObject *rc = (PyCodeObject *)PyFunction_GET_CODE(replacement);
    Extra *rex = jf_get_extra(rc, 1);
    if (rex == NULL) return -1;
    rex->cur_action = ACT_SKIP;
    rex->is_replacement = 1;
    jf_extra_update_fast(rex);
    return 0;
}

static PyObject *eval_frame_slow(PyThreadState *ts, JF_Frame *frame, int throw_flag);

/* The eval-frame function: the fast path only, small enough that the common
 * cases (thread off, code skipped, our own frames) cost a few loads and a
 * tail call; everything else is in eval_frame_slow. Borrowed frame; returns
 * the frame's result (new ref) or NULL with an exception set. */
static PyObject *eval_frame_hook(PyThreadState *ts, JF_Frame *frame, int throw_flag) {
    TState *st = &tls;
    if (__builtin_expect(st->busy || frame == st->passing, 0))
        return _PyEval_EvalFrameDefault(ts, frame, throw_flag);
    if (st->callback == NULL) return pass_through(ts, frame, throw_flag);
    Extra *ex = (Extra *)jf_code_get_extra(JF_FRAME_CODE(frame), extra_index);
    if (ex != NULL && ex->epoch == global_epoch && !throw_flag) {
        if (ex->fast == FAST_PASS) return pass_through(ts, frame, throw_flag);
        if (ex->fast == FAST_DEFAULT) return _PyEval_EvalFrameDefault(ts, frame, throw_flag);
    }
    return eval_frame_slow(ts, frame, throw_flag);
}

/* The cache lookup and, on a miss, the callback, for a frame that may be
 * intercepted. Borrows everything. Either sets *native (and *rec_out: the
 * recursive action to run it under) and returns NULL, meaning "evaluate the
 * frame", or returns the frame's result (new ref) or NULL with an exception
 * set, without having evaluated it: the caller then discards the frame. */
static PyObject *intercept(PyThreadState *ts, JF_Frame *frame, PyCodeObject *code, Extra *ex,
                           int *native, int *rec_out) {
    TState *st = &tls;
    int cur = ex ? ex->cur_action : ACT_DEFAULT;
    int rec = ex ? ex->rec_action : ACT_DEFAULT;
    PyObject *func = JF_FRAME_FUNC(frame);
    PyObject *const *args = JF_FRAME_LOCALSPLUS(frame);
    Py_ssize_t nargs = frame_nargs(code);
    PyObject *cb = st->callback;
    int run_only = (cb == Py_False);

    if (ex != NULL && ex->head != NULL) {
        int restarts = 0;
    lookup:
        for (Entry *e = ex->head; e != NULL; e = e->next) {
            if (!run_only && e->owner != cb) continue;
            PyObject *g = bind_to_frame(e->guard, func);
            if (g == NULL) return NULL;
            uint64_t version = ex->version;
            PyObject *r = call_hidden(ts, g, args, nargs);
            Py_DECREF(g);
            if (r == NULL) return NULL;
            int ok = (r == Py_True) ? 1 : (r == Py_False ? 0 : PyObject_IsTrue(r));
            Py_DECREF(r);
            if (ok < 0) return NULL;
            if (ex->version != version) {
                /* A guard changed this cache (e.g. reset() from a property):
                 * the list we were walking may be gone. */
                if (++restarts > 3) break;
                goto lookup;
            }
            if (ok) {
                if (e != ex->head) mru_move(ex, e);
                PyObject *fn = bind_to_frame(e->replacement, func);
                if (fn == NULL) return NULL;
                return run_replacement(fn, args, nargs, rec);
            }
        }
    }

    if (run_only || cur == ACT_RUN_ONLY) {
        *native = 1;
        *rec_out = rec;
        return NULL;
    }

    /* Miss: the Python callback decides. */
    PyObject *argtuple = PyTuple_New(nargs);
    if (argtuple == NULL) return NULL;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyObject *a = args[i];
        if (a == NULL) a = Py_None; /* cannot happen for bound arguments */
        Py_INCREF(a);
        PyTuple_SET_ITEM(argtuple, i, a);
    }
    Py_INCREF(cb);
    PyObject *cbargs[2] = {func, argtuple};
    PyObject *res = call_hidden(ts, cb, cbargs, 2);
    Py_DECREF(argtuple);
    if (res == NULL) {
        Py_DECREF(cb);
        return NULL;
    }
    if (res == Py_None) {
        Py_DECREF(res);
        Py_DECREF(cb);
        /* The callback may have set this code's strategy (skip, run-only). */
        ex = jf_get_extra(code, 0);
        *native = 1;
        *rec_out = ex ? ex->rec_action : ACT_DEFAULT;
        return NULL;
    }
    if (!PyTuple_Check(res) || PyTuple_GET_SIZE(res) != 2) {
        PyErr_Format(PyExc_TypeError,
                     "janus_frame: the frame callback must return None or a (guard, "
                     "replacement) pair of functions, got %.100s",
                     Py_TYPE(res)->tp_name);
        Py_DECREF(res);
        Py_DECREF(cb);
        return NULL;
    }
    PyObject *guard = PyTuple_GET_ITEM(res, 0);
    PyObject *replacement = PyTuple_GET_ITEM(res, 1);
    if (check_convention(guard, "guard", code) < 0 ||
        check_convention(replacement, "replacement", code) < 0 ||
        (ex = jf_get_extra(code, 1)) == NULL || add_entry(ex, guard, replacement, cb) < 0) {
        Py_DECREF(res);
        Py_DECREF(cb);
        return NULL;
    }
    Py_DECREF(res);
    Py_DECREF(cb);
    /* Our own reference: marking may clear another code's stale state, whose
     * destructors could drop this entry. */
    PyObject *repl = ex->head->replacement;
    Py_INCREF(repl);
    rec = ex->rec_action;
    PyObject *fn = mark_replacement_code(repl) < 0 ? NULL : bind_to_frame(repl, func);
    Py_DECREF(repl);
    if (fn == NULL) return NULL;
    return run_replacement(fn, args, nargs, rec);
}

/* Borrowed frame; returns the frame's result (new ref) or NULL with an
 * exception set. */
__attribute__((noinline)) static PyObject *eval_frame_slow(PyThreadState *ts, JF_Frame *frame,
                                                           int throw_flag) {
    TState *st = &tls;
    /* Our own guards and compiler run natively, never seen by a hook below us. */
    if (frame == st->passing || st->busy) return _PyEval_EvalFrameDefault(ts, frame, throw_flag);
    /* Off in this thread, or a hook installed above ours handed us this frame:
     * the hook on top owns the frames of its region (it has already seen and
     * possibly transformed this one), so we do not compile what it runs. */
    if (st->callback == NULL || JF_GET_EVAL_FRAME(ts->interp) != eval_frame_hook)
        return pass_through(ts, frame, throw_flag);
    /* Interpreter shutdown (module teardown, __del__ of globals): the
     * compiler's modules are being cleared; nothing runs compiled any more. */
    if (JF_IS_FINALIZING()) return pass_through(ts, frame, throw_flag);

    PyCodeObject *code = JF_FRAME_CODE(frame);
    PyObject *func = JF_FRAME_FUNC(frame);
    int flags = code->co_flags;
    if (throw_flag || !(flags & CO_OPTIMIZED) ||
        (flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR | CO_ITERABLE_COROUTINE)) ||
        !JF_FRAME_NOT_STARTED(frame) || func == NULL || !PyFunction_Check(func) ||
        JF_TSTATE_TRACING(ts) || !jf_frame_discardable(ts, frame))
        return pass_through(ts, frame, throw_flag);

    Extra *ex = jf_get_extra(code, 0);
    int cur = ex ? ex->cur_action : ACT_DEFAULT;
    int rec = ex ? ex->rec_action : ACT_DEFAULT;
    if (cur == ACT_SKIP) {
        /* A replacement's own frame is ours: run it as written rather than
         * offering it to another JIT below us (which would compile it again). */
        if (ex->is_replacement && rec == ACT_DEFAULT)
            return _PyEval_EvalFrameDefault(ts, frame, throw_flag);
        return run_native(rec, ts, frame, throw_flag);
    }

    int native = 0;
    PyObject *r = intercept(ts, frame, code, ex, &native, &rec);
    if (native) return run_native(rec, ts, frame, throw_flag);
    /* Not evaluated: its slots were only lent to the guard and replacement,
     * which have returned. From 3.12 the frame is ours to clear and pop. */
    jf_frame_discard(ts, frame);
    return r;
}

/* ------------------------------------------------------------------ */
/* Python API.                                                          */

/* Borrows new_cb; returns the previous callback (new ref; None when off). */
static PyObject *py_set_eval_frame(PyObject *self, PyObject *new_cb) {
    if (new_cb != Py_None && new_cb != Py_False && !PyCallable_Check(new_cb)) {
        PyErr_Format(PyExc_TypeError,
                     "set_eval_frame expects None, False or a callable, got %.100s",
                     Py_TYPE(new_cb)->tp_name);
        return NULL;
    }
    if (!jf_in_home_interpreter()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "janus_frame can only be turned on in the interpreter that first "
                        "imported it (the main one); subinterpreters run natively");
        return NULL;
    }
    PyObject *stolen = NULL;
    if (new_cb != Py_None) {
        Py_INCREF(new_cb);
        stolen = new_cb;
    }
    PyObject *old = jf_swap_callback(stolen);
    if (old == NULL) Py_RETURN_NONE;
    return old;
}

/* Returns the current thread's callback (new ref; None when off). */
static PyObject *py_get_eval_frame(PyObject *self, PyObject *unused) {
    PyObject *cb = tls.callback ? tls.callback : Py_None;
    Py_INCREF(cb);
    return cb;
}

/* Returns None (new ref). Every code object's cache is dropped lazily: the
 * epoch bump makes jf_get_extra() clear a stale extra on its next use, so
 * reset() costs O(1) however many code objects have state. */
static PyObject *py_reset(PyObject *self, PyObject *unused) {
    global_epoch++;
    Py_RETURN_NONE;
}

/* Returns a new dict describing the installation (for tests and diagnostics). */
static PyObject *py_hook_info(PyObject *self, PyObject *unused) {
    PyInterpreterState *interp = PyInterpreterState_Get();
    _PyFrameEvalFunction cur = JF_GET_EVAL_FRAME(interp);
    const char *top = cur == eval_frame_hook              ? "janus_frame"
                      : cur == _PyEval_EvalFrameDefault ? "default"
                                                        : "other";
    return Py_BuildValue("{s:O,s:n,s:O,s:s}", "installed",
                         cur == eval_frame_hook ? Py_True : Py_False, "active_threads",
                         active_threads, "chained",
                         (previous_eval != NULL && previous_eval != _PyEval_EvalFrameDefault)
                             ? Py_True
                             : Py_False,
                         "eval_frame", top);
}

/* ------------------------------------------------------------------ */
/* Test and benchmark aids.                                              */

/* The simplest possible eval function: the default evaluator, called
 * directly. Its cost over no hook at all is the floor every PEP 523 user
 * pays (Python-to-Python calls are no longer inlined by the interpreter).
 * Borrowed frame; returns the frame's result (new ref) or NULL with an
 * exception set (the default evaluator clears the frame where it must). */
static PyObject *empty_eval_frame(PyThreadState *ts, JF_Frame *frame, int throw_flag) {
    return _PyEval_EvalFrameDefault(ts, frame, throw_flag);
}

/* Borrows on; returns None (new ref). Installs or removes empty_eval_frame,
 * only where no other eval function is installed. */
static PyObject *py_empty_hook(PyObject *self, PyObject *on) {
    int want = PyObject_IsTrue(on);
    if (want < 0) return NULL;
    if (!jf_in_home_interpreter()) {
        PyErr_SetString(PyExc_RuntimeError, "_empty_hook: not in janus_frame's interpreter");
        return NULL;
    }
    PyInterpreterState *interp = home_interp;
    _PyFrameEvalFunction cur = JF_GET_EVAL_FRAME(interp);
    _PyFrameEvalFunction from = want ? _PyEval_EvalFrameDefault : empty_eval_frame;
    if (cur != from) {
        PyErr_SetString(PyExc_RuntimeError,
                        want ? "_empty_hook(True): another eval function is installed"
                             : "_empty_hook(False): the empty hook is not installed");
        return NULL;
    }
    JF_SET_EVAL_FRAME(interp, want ? empty_eval_frame : _PyEval_EvalFrameDefault);
    Py_RETURN_NONE;
}

/* Returns a new int: the address of this thread's data-stack top. Every
 * frame, intercepted or not, must leave it where it found it. */
static PyObject *py_data_stack_top(PyObject *self, PyObject *unused) {
    return PyLong_FromVoidPtr(JF_DATASTACK_TOP(PyThreadState_Get()));
}

static PyMethodDef methods[] = {
    {"set_eval_frame", py_set_eval_frame, METH_O,
     "set_eval_frame(cb) -> previous: this thread's callback (None: off, False: run-only, "
     "callable: compile on a miss)."},
    {"get_eval_frame", py_get_eval_frame, METH_NOARGS, "This thread's callback."},
    {"reset", py_reset, METH_NOARGS, "Drop every cache entry, strategy and state (lazily)."},
    {"hook_info", py_hook_info, METH_NOARGS, "Installation state of the hook."},
    {"_empty_hook", py_empty_hook, METH_O,
     "_empty_hook(on): install/remove an eval function that only calls the default one "
     "(benchmark floor; refuses when another eval function is installed)."},
    {"_data_stack_top", py_data_stack_top, METH_NOARGS,
     "Address of this thread's frame data-stack top (tests: intercepted calls leave it "
     "unchanged)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "janus_frame._C", "janus_frame's PEP 523 frame hook.", -1, methods,
};

/* Checks that the direct co_extra read (compat.h) agrees with CPython's
 * API on a fresh code object. Returns 0, or -1 with ImportError set. */
static int check_code_extra(void) {
    PyCodeObject *c = PyCode_NewEmpty("janus_frame", "check", 0);
    if (c == NULL) return -1;
    Extra *probe = (Extra *)PyMem_Calloc(1, sizeof(Extra));
    void *via_api = NULL;
    int stored = probe != NULL && JF_SET_CODE_EXTRA(c, extra_index, probe) == 0;
    int ok = stored && JF_API_GET_CODE_EXTRA(c, extra_index, &via_api) == 0 &&
             via_api == probe && jf_code_get_extra(c, extra_index) == probe;
    if (!stored) PyMem_Free(probe);
    Py_DECREF(c); /* frees a stored probe through extra_free */
    if (ok) return 0;
    if (!PyErr_Occurred())
        PyErr_SetString(PyExc_ImportError,
                        "janus_frame: this CPython's code-object extra slots do not have "
                        "the layout csrc/compat.h expects");
    return -1;
}

/* Returns the new module (new ref), or NULL with an exception set. */
PyMODINIT_FUNC PyInit__C(void) {
    PyInterpreterState *interp = PyInterpreterState_Get();
    if (home_interp != NULL && home_interp != interp) {
        PyErr_SetString(PyExc_ImportError,
                        "janus_frame._C can be loaded in one interpreter per process only");
        return NULL;
    }
    home_interp = interp;
    if (detached_globals == NULL) {
        detached_globals = Py_BuildValue("{s:s}", "__name__", "janus_frame._detached");
        if (detached_globals == NULL) return NULL;
    }
    if (extra_index < 0) {
        extra_index = JF_REQUEST_CODE_EXTRA_INDEX(extra_free);
        if (extra_index < 0) {
            PyErr_SetString(PyExc_RuntimeError, "janus_frame: no free code-object extra slot");
            return NULL;
        }
        if (check_code_extra() < 0) return NULL;
    }
    if (PyType_Ready(&JF_ThreadExitWatch_Type) < 0 || PyType_Ready(&JF_Wrapper_Type) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&JF_Wrapper_Type);
    if (PyModule_AddObject(m, "Wrapper", (PyObject *)&JF_Wrapper_Type) < 0) {
        Py_DECREF(&JF_Wrapper_Type);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "DEFAULT", ACT_DEFAULT) < 0 ||
        PyModule_AddIntConstant(m, "SKIP", ACT_SKIP) < 0 ||
        PyModule_AddIntConstant(m, "RUN_ONLY", ACT_RUN_ONLY) < 0 || jf_guards_init(m) < 0 ||
        jf_code_state_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
