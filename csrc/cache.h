/* The per-code cache record that eval_frame.c keeps in a code object's
 * extra slot, shared with code_state.c (its Python-facing accessors). */
#ifndef JANUS_FRAME_CACHE_H
#define JANUS_FRAME_CACHE_H

#include "compat.h"
#include <stdint.h>

enum { ACT_DEFAULT = 0, ACT_SKIP = 1, ACT_RUN_ONLY = 2 };
/* Precomputed from (cur_action, rec_action, is_replacement) so a skipped
 * frame costs a handful of loads in the hook's fast path. */
enum { FAST_NONE = 0, FAST_PASS = 1, FAST_DEFAULT = 2 };

typedef struct Entry {
    struct Entry *next;
    PyObject *guard;       /* strong */
    PyObject *replacement; /* strong */
    PyObject *owner;       /* strong: the callback that compiled this entry */
} Entry;

typedef struct {
    Entry *head;        /* most recently hit first */
    int cur_action;     /* for this frame */
    int rec_action;     /* for frames it calls (while it runs) */
    int is_replacement; /* our own generated code: its frame is never handed to another hook */
    int fast;           /* FAST_*: what the hook's fast path may do without looking further */
    uint64_t epoch;     /* reset() bumps the global epoch; stale extras are cleared lazily */
    uint64_t version;   /* bumped on every change of the entry list */
    PyObject *pystate;  /* strong or NULL: the Python side's per-code record */
} Extra;

/* Borrows code; the code's record (created if ``create``), or NULL (with an
 * exception set only when creating failed). */
Extra *jf_get_extra(PyCodeObject *code, int create);
/* Drops a record's entries, strategy and Python state. */
void jf_extra_clear(Extra *ex);
/* Recomputes the hook's fast-path decision after a strategy change. */
void jf_extra_update_fast(Extra *ex);

#endif
