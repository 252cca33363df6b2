/*
 * keyring.h: the keys under every secret tokend keeps.
 *
 * A 256-bit master key, never stored in clear, seals a keyring of versioned
 * data keys (AES-256-GCM, for sealed values) and the HMAC key of issued
 * secrets; the sealed keys live in the store (tables keyring and
 * keyring_keys). The master key is split at init into Shamir shares (K of N)
 * and, optionally, also wrapped by an auto-unseal key file (0600) so that a
 * single node -- or --dev -- restarts without people. Until enough shares or
 * the key file open it, the keyring is sealed: nothing secret can be read,
 * issued secrets cannot be checked, and the API answers 503 "sealed".
 *
 * Unseal progress is per node (shares given to this process). Each node
 * opens the same keyring from the store with its own shares or key file.
 * An unseal attempt is bound to a nonce: the first share starts it and
 * returns the nonce, every further share must carry it, so that a stranger
 * (the share checksum is public) can neither disturb nor pre-fill it.
 *
 * Everything read from the store (rows of keyring, keyring_keys,
 * keyring_rewrap) is untrusted input: a value out of range, a sealed key
 * that is not well-formed, is TK_EINTERNAL "keyring_corrupt" and the node
 * stays sealed.
 *
 * The keyring's lock is never held across a store round trip: keys are
 * read and opened outside it and swapped in under a short write lock.
 * The keyring module records no events: init, unseal and rotate run the
 * caller's hook (struct tk_keyring_hook) before they take effect, and a
 * value that does not open is returned as a struct tk_open_failure.
 *
 * struct tk_secret is plaintext (zeroed when freed, never printed);
 * struct tk_sealed is ciphertext as stored. They are different types, so
 * that code that builds an outbound request, which takes tk_secret, cannot
 * be handed a sealed value by mistake (field report 003).
 *
 * All functions are thread-safe.
 */
#ifndef TK_KEYRING_H
#define TK_KEYRING_H

#include "../common/tk.h"
#include "../store/store.h"

struct tk_secret {
    unsigned char *p; /* NUL-terminated for convenience; len excludes it */
    size_t len;
};
/* Give plaintext secrets a heap of locked, non-dumpable memory of size
 * bytes (OpenSSL's secure heap); call once at start. Without it, or when
 * it is full, secrets live on the ordinary heap. Wiped when freed, always. */
tk_rc tk_secret_heap_init(size_t size, struct tk_err *e);
struct tk_secret *tk_secret_new(const void *p, size_t len);
/* Zero and free; NULL is a no-op. */
void tk_secret_free(struct tk_secret *s);

/* A sealed value: "ENC:v1:<key version>:<base64url(nonce|ciphertext|tag)>". */
struct tk_sealed {
    char *text;
};
/* Wrap a value read from the store (copied); free with tk_sealed_free. */
struct tk_sealed *tk_sealed_from_text(const char *text);
void tk_sealed_free(struct tk_sealed *s);

/* Where a sealed value lives: bound into it as additional data, so that a
 * value copied to another tenant, table, column or row fails to open. */
struct tk_seal_ad {
    const char *tenant_id, *table, *column, *row_id;
};

struct tk_keyring;

#define TK_SHARES_MAX 16
#define TK_SHARE_MAX 80
#define TK_UNSEAL_NONCE 33 /* 32 hex chars + NUL */

struct tk_seal_status {
    bool initialized;
    bool sealed;
    bool corrupt;                    /* the store's keyring row is not valid (sealed) */
    int threshold, shares, progress; /* progress: shares given to this node */
    unsigned char held[TK_SHARES_MAX]; /* the share numbers given, ascending (progress of them) */
    bool auto_unseal;                /* the keyring has an auto-unseal key file */
    int64_t data_version;            /* active data key version (0 while sealed) */
};

/* What init, unseal and rotate tell the caller's hook before they take
 * effect. */
struct tk_keyring_change {
    const char *action;  /* "init", "unseal", "rotate" */
    const char *how;     /* unseal: "shares" or "key_file"; else NULL */
    int shares, threshold;
    bool auto_unseal;
    int64_t data_version;
    bool in_tx;          /* db is inside the action's own transaction (init, rotate) */
};

/* A sealed value that did not open: where, and under which key version. */
struct tk_open_failure {
    int64_t key_version; /* -1 when the text is not a sealed value */
    bool unknown_version; /* this keyring has no such version (after a reload) */
    char row[200];        /* "table.column:row_id" */
};

/* The caller's hooks (NULL members are skipped). change runs in init and
 * rotate inside the action's transaction, before commit, and in unseal
 * after the keys opened and before the node unseals: a non-OK result
 * aborts the action (init and rotate roll back, unseal stays sealed) with
 * the hook's error. open_failed runs inside a rewrap step's transaction for
 * each value that does not open; a non-OK result rolls the step back. */
struct tk_keyring_hook {
    tk_rc (*change)(void *arg, struct tk_db *db, const struct tk_keyring_change *c,
                    struct tk_err *e);
    tk_rc (*open_failed)(void *arg, struct tk_db *db, const struct tk_seal_ad *ad,
                         const struct tk_open_failure *f, const char *message, struct tk_err *e);
    void *arg;
};

/* A sealed, not yet loaded keyring for a node whose local files (the
 * auto-unseal key, a foundation-era hash.key to import) are in data_dir. */
tk_rc tk_keyring_new(const char *data_dir, struct tk_keyring **out, struct tk_err *e);
void tk_keyring_free(struct tk_keyring *k);

/* Read whether the store's keyring is initialized, and its K of N. A row
 * out of range is TK_EINTERNAL "keyring_corrupt"; the keyring stays sealed
 * and refuses shares until a load or sync reads a valid row. */
tk_rc tk_keyring_load(struct tk_keyring *k, struct tk_db *db, struct tk_err *e);
void tk_keyring_status(struct tk_keyring *k, struct tk_seal_status *st);
bool tk_keyring_sealed(struct tk_keyring *k);

/* Initialize: a new master key split into n shares (threshold t), written
 * to shares[0..n-1] (shown once, never stored), plus, with auto_key_path,
 * an auto-unseal key file created there (0600; refused if it exists). A
 * foundation-era <data_dir>/hash.key becomes the HMAC key, so operator
 * tokens issued before keep working; the file is removed. The keyring is
 * unsealed afterwards. TK_ECONFLICT if the store's keyring exists. */
tk_rc tk_keyring_init(struct tk_keyring *k, struct tk_db *db, int n, int t,
                      const char *auto_key_path, char (*shares)[TK_SHARE_MAX],
                      const struct tk_keyring_hook *hook, struct tk_err *e);

/* Give one share. The first share of an attempt starts it and writes its
 * nonce to nonce_out; every further share must carry that nonce, else it
 * is refused (TK_ECONFLICT "unseal_nonce_mismatch") and progress is left as
 * it was; a nonce with no attempt in progress is refused the same way. st
 * reports progress; when the threshold is reached the keyring opens (or, if
 * the shares do not open it, the attempt ends and the error says so). A
 * malformed, mistyped or repeated share is refused without counting. */
tk_rc tk_keyring_unseal_share(struct tk_keyring *k, struct tk_db *db, const char *share,
                              const char *nonce, char nonce_out[TK_UNSEAL_NONCE],
                              const struct tk_keyring_hook *hook, struct tk_seal_status *st,
                              struct tk_err *e);
/* End the unseal attempt in progress, if any (its shares are wiped).
 * *nonce_ok tells whether nonce was the attempt's. Returns whether there
 * was an attempt. */
bool tk_keyring_unseal_reset(struct tk_keyring *k, const char *nonce, bool *nonce_ok);
/* Unseal with the auto-unseal key file at path. The file must be a
 * regular file (not a symlink) owned by this process's user, mode 0600 or
 * stricter ("key_file_insecure"), of exactly 32 bytes ("key_file_corrupt"). */
tk_rc tk_keyring_unseal_file(struct tk_keyring *k, struct tk_db *db, const char *path,
                             const struct tk_keyring_hook *hook, struct tk_err *e);
/* Forget every key and the unseal progress. */
void tk_keyring_seal(struct tk_keyring *k);

/* A new data key version for new values; old versions stay for reading. */
tk_rc tk_keyring_rotate(struct tk_keyring *k, struct tk_db *db, int64_t *version,
                        const struct tk_keyring_hook *hook, struct tk_err *e);

/* Follow the store (one SELECT): learn that the keyring was initialized
 * through another node, and load a data key version rotated on another
 * node, so that new values are sealed under it. The daemon calls it every
 * few seconds. */
tk_rc tk_keyring_sync(struct tk_keyring *k, struct tk_db *db, struct tk_err *e);

/* Keyed hash of an issued secret as 64 hex chars, and the id of the key
 * that made it (17 bytes). TK_EUNAVAIL ("sealed") while sealed. */
#define TK_HASH_HEX 65
tk_rc tk_keyring_hash(struct tk_keyring *k, const char *secret, size_t len,
                      char out[TK_HASH_HEX], char key_id[17], struct tk_err *e);

/* Seal plain for the place ad under the active data key. */
tk_rc tk_keyring_seal_value(struct tk_keyring *k, const struct tk_secret *plain,
                            const struct tk_seal_ad *ad, struct tk_sealed **out,
                            struct tk_err *e);
/* Open a sealed value read from the place ad. With db, a key version this
 * node does not have yet (rotated on another node) reloads the keyring once.
 * A value that does not open (malformed, unknown key version, moved,
 * altered) is TK_EINTERNAL with code "decrypt_failed" and a message naming
 * the row and key version -- a key/data fault, never an upstream one --
 * and, with f, the row and version for the caller to report (as a keyring
 * decrypt_failed event). */
tk_rc tk_keyring_open_value(struct tk_keyring *k, struct tk_db *db, const struct tk_sealed *v,
                            const struct tk_seal_ad *ad, struct tk_secret **out,
                            struct tk_open_failure *f, struct tk_err *e);

/* ---- rewrap ----
 *
 * Re-seal every sealed value in the store under the active data key
 * version, in the background, resumable after a crash or restart.
 *
 * Tables that hold sealed values register their columns once at start-up,
 * in a fixed order (the job's cursor is an index into this registry):
 * tk_keyring_register_sealed("connections", "refresh_token"). table and
 * column are identifiers from code, never input, at most 32 characters
 * each ([a-z0-9_]); a registered table has columns id TEXT, tenant_id TEXT
 * and the sealed TEXT column (NULL allowed, skipped). Registering twice is
 * a no-op. NOTE: no production table registers yet -- the foundation and the
 * keyring keep no sealed values in tables of their own; upstream
 * connections will be the first. Until then a rewrap finishes at once with
 * total 0.
 *
 * The job's state is one row of keyring_rewrap (target version, running |
 * done, total, done, failed, the cursor: registry index + last row id) with
 * a lease, so that one node at a time works on it; another node takes over
 * when the lease expires. Each step is one transaction: rows after the
 * cursor are opened with their own place and re-sealed under the target
 * version with a compare-and-swap UPDATE (a concurrent writer wins; the row
 * is re-read at the next step), and the cursor and counters advance in the
 * same transaction. A key version this node has not loaded yet (rotated on
 * another node) reloads the keyring first. A value that does not open is
 * counted as failed (the first such row is named in the status), reported
 * to the hook's open_failed in the step's transaction, left as it was, and
 * not retried.
 */
#define TK_SEALED_IDENT_MAX 32
#define TK_SEALED_COLUMNS_MAX 32
/* TK_EINVAL for a bad identifier, TK_ETOOBIG when the registry is full. */
tk_rc tk_keyring_register_sealed(const char *table, const char *column);

struct tk_rewrap_status {
    bool exists;                 /* false: there never was a rewrap */
    char state[16];              /* running | done */
    int64_t target_version, total, done, rewrapped, failed;
    char first_failed_row[200];  /* "" when none */
    int64_t started_at, finished_at; /* ms; finished_at 0 while running */
    char lease_owner[64];        /* "" when nobody holds the job */
    int64_t lease_until;
};

/* Start a job toward the store's active data key version, counting the
 * registered values. TK_ECONFLICT "rewrap_running" while one runs;
 * TK_EUNAVAIL "sealed" while sealed. */
tk_rc tk_keyring_rewrap_start(struct tk_keyring *k, struct tk_db *db,
                              struct tk_rewrap_status *st, struct tk_err *e);

struct tk_rewrap_progress {
    bool running;    /* a job is running (after this step) */
    bool held;       /* owner held the job's lease for this step */
    bool finished;   /* this step finished the job */
    int processed;   /* values visited in this step */
    int rewrapped;   /* of those, re-sealed */
    int failed;      /* of those, failed to open */
    int64_t done, total;
};

/* One batch of the running job as owner: claim or renew the lease (for the
 * lease length, tk_keyring_set_rewrap_lease), then visit up to batch values
 * in one transaction. With no job running, or another owner's lease live,
 * returns TK_OK with nothing done. While sealed: TK_EUNAVAIL "sealed" at
 * once. */
tk_rc tk_keyring_rewrap_step(struct tk_keyring *k, struct tk_db *db, const char *owner,
                             int batch, const struct tk_keyring_hook *hook,
                             struct tk_rewrap_progress *p, struct tk_err *e);
/* The lease a step takes (default 15000 ms). */
void tk_keyring_set_rewrap_lease(struct tk_keyring *k, int64_t ms);
/* The latest job, if any. */
tk_rc tk_keyring_rewrap_status(struct tk_db *db, struct tk_rewrap_status *st, struct tk_err *e);

#endif
