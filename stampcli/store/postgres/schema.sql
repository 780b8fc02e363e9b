-- stamp's PostgreSQL schema, version 6 (stampcli/store/postgres/db.py: SCHEMA_VERSION).
-- The same tables as the SQLite store (stampcli/store/db.py), in PostgreSQL's types:
-- timestamps stay Unix seconds (double precision) so both backends return the same
-- records; contact and ledger fields stay JSON text, because their exact text and key
-- order are what an import compares and what a message is rendered from.
-- Names and keys are COLLATE "C": byte order, as SQLite sorts them, whatever the
-- cluster's locale.

CREATE TABLE stamp_schema (
    version     integer NOT NULL,
    migrated_at double precision NOT NULL
);

CREATE TABLE lists (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text COLLATE "C" NOT NULL UNIQUE,
    fields      text NOT NULL DEFAULT '[]',   -- JSON array of field names, first seen first
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL
);

CREATE TABLE contacts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    list_id     bigint NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    key         text COLLATE "C" NOT NULL,  -- normalised address, lower case: the identity
    email       text NOT NULL,              -- address to send to (domain IDNA-encoded)
    fields      text NOT NULL,              -- JSON object of every column, as imported
    added_at    double precision NOT NULL,
    updated_at  double precision NOT NULL,
    UNIQUE (list_id, key)
);
-- iter_list pages by id within a list
CREATE INDEX contacts_by_list ON contacts (list_id, id);

CREATE TABLE suppressions (
    key         text COLLATE "C" NOT NULL,
    scope       text COLLATE "C" NOT NULL DEFAULT '',  -- '' = every list, else a list name
    reason      text NOT NULL,     -- unsubscribed|hard_bounce|complaint|manual|invalid
    source      text NOT NULL,     -- provider label, file name or command
    detail      text,
    created_at  double precision NOT NULL,
    PRIMARY KEY (key, scope)
);

CREATE TABLE campaigns (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text COLLATE "C" NOT NULL UNIQUE,
    content_hash  text,
    created_at    double precision NOT NULL,
    updated_at    double precision NOT NULL,
    paused_reason text,
    paused_at     double precision,
    audience_mark jsonb,            -- size/mtime/hash of the audience last planned
    settings      jsonb             -- auto_stop, bounce_policy (for the event server)
);

-- campaign_id has no foreign key: its check, a trigger run for every row, cost 40% of
-- planning a campaign. Only stamp writes here, always to a campaign it just ensured,
-- and forgetting a campaign deletes its rows in the same transaction
-- (postgres/campaigns.py, DELETE).
CREATE TABLE ledger (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id         bigint NOT NULL,
    key                 text COLLATE "C" NOT NULL,
    email               text NOT NULL,
    fields              text NOT NULL,  -- JSON snapshot of the contact at planning time
    state               text NOT NULL DEFAULT 'pending',
    attempts            integer NOT NULL DEFAULT 0,
    provider            text,
    provider_message_id text,
    message_id          text,
    last_error          text,
    next_attempt_at     double precision,
    first_attempt_at    double precision,  -- expire_after counts from here
    created_at          double precision NOT NULL,
    updated_at          double precision NOT NULL,
    sent_at             double precision,
    -- Unused: the leases of several workers on one campaign live in ledger_leases
    -- (below), so that taking and renewing them never rewrites a ledger row.
    lease_owner         text,
    lease_expires_at    double precision,
    UNIQUE (campaign_id, key),
    -- stampcli.store.ledger.STATES (SQLite's check also has 'skipped', never written)
    CHECK (state IN ('pending', 'sending', 'sent', 'deferred', 'failed', 'unknown',
                     'suppressed'))
) WITH (fillfactor = 75);
-- No index names a column that a claim or a record changes (state, attempts, ...), and
-- pages keep a quarter free: then those updates are HOT, written beside the old row
-- with no index entry to add. Measured on a 500-row batch: record 27.5 -> 15.5 ms,
-- claim 29.9 -> 24.7 ms of server time. The price is that reads by state (the next
-- pending rows, counts) walk the campaign's rows in id order through this index,
-- once per pass rather than once per batch.
CREATE INDEX ledger_by_campaign ON ledger (campaign_id, id);
-- Delivery events find their row by recipient: by_address across campaigns, and
-- by_message_id too (a provider message id always comes with its recipient). The key
-- never changes after planning, so this index keeps claims and records HOT; SQLite's
-- index on provider_message_id would not (record sets it), so it has none here.
CREATE INDEX ledger_by_key ON ledger (key);

CREATE TABLE locks (
    campaign_id   bigint PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
    owner         text NOT NULL,    -- host:pid:random
    host          text NOT NULL,
    pid           integer NOT NULL,
    acquired_at   double precision NOT NULL,
    heartbeat_at  double precision NOT NULL
);

CREATE TABLE quota_usage (
    provider    text COLLATE "C" NOT NULL,  -- provider label
    day         text COLLATE "C" NOT NULL,  -- UTC date, YYYY-MM-DD
    count       integer NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, day)
);

CREATE TABLE runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id  bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    started_at   double precision NOT NULL,
    ended_at     double precision,
    exit_code    integer,
    summary      jsonb
);
CREATE INDEX runs_by_campaign ON runs (campaign_id, id);

-- Delivery events (webhooks and pulls), one row per (provider, event id): a redelivery
-- leaves one row. ledger_id has no foreign key, as the ledger's campaign_id has none:
-- forgetting a campaign unlinks its events in the same transaction (postgres/campaigns.py).
CREATE TABLE events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider     text COLLATE "C" NOT NULL,  -- provider label
    event_id     text COLLATE "C" NOT NULL,  -- the provider's id, or sha256:<hex> of the event
    type         text NOT NULL,              -- inbound.model.EventType
    bounce_kind  text,                       -- hard|soft (bounced, deferred)
    auto_reply   boolean NOT NULL DEFAULT false,
    occurred_at  double precision NOT NULL,
    received_at  double precision NOT NULL,
    campaign     text,                       -- the campaign name the event carried
    campaign_id  bigint REFERENCES campaigns(id) ON DELETE SET NULL,
    ledger_id    bigint,
    matched_by   text,                       -- metadata|message_id|address; NULL: unmatched
    recipient    text COLLATE "C" NOT NULL,  -- the address, lower case
    message_id   text,                       -- the provider's message id, normalised
    reason       text,
    url          text,
    raw          text NOT NULL,              -- the provider's event, JSON text, secrets redacted
    applied      boolean NOT NULL DEFAULT false,  -- true once its suppressions etc. are written
    UNIQUE (provider, event_id)
);
CREATE INDEX events_by_campaign ON events (campaign_id, type);
CREATE INDEX events_by_recipient ON events (recipient, type, occurred_at);
CREATE INDEX events_by_ledger ON events (ledger_id);

CREATE TABLE event_cursors (
    provider    text COLLATE "C" NOT NULL,  -- provider label
    account     text COLLATE "C" NOT NULL,  -- which account/domain of it ('' if one)
    cursor      text NOT NULL,              -- where `stamp events pull` goes on from
    updated_at  double precision NOT NULL,
    PRIMARY KEY (provider, account)
);

-- Schedule state, one row per scheduled campaign (stampcli/store/postgres/schedules.py);
-- added in version 5 (postgres/db.py MIGRATIONS[4] is the same statement).
CREATE TABLE schedules (
    campaign_id     bigint PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
    state           text NOT NULL,
    next_due_at     double precision,
    file            text,
    detail          jsonb,
    ab_test_done_at double precision,
    ab_winner       integer,
    ab_decided_at   double precision,
    ab_manual       boolean NOT NULL DEFAULT false,
    updated_at      double precision NOT NULL
);
CREATE INDEX schedules_by_due ON schedules (next_due_at);
-- `stamp worker` (schema 3): campaigns queued for the workers, and the workers themselves
CREATE TABLE fleet_queue (
    name         text COLLATE "C" PRIMARY KEY,  -- the campaign's name (its ledger's)
    definition   text NOT NULL,      -- JSON: its keys, ${NAME} unresolved, paths into bundle
    bundle       bytea NOT NULL,     -- zip of the files it reads (templates, images, list)
    digest       text NOT NULL,      -- sha256 of definition and bundle
    state        text NOT NULL DEFAULT 'queued',  -- queued | done
    due_at       double precision NOT NULL,  -- a worker takes it once this has passed
    added_at     double precision NOT NULL,
    updated_at   double precision NOT NULL,
    added_by     text NOT NULL,      -- host:pid of the command that queued it
    runs         integer NOT NULL DEFAULT 0,
    last_run_at  double precision,
    last_reason  text,               -- RunSummary.reason, or refused / error
    last_error   text,
    last_worker  text
);
CREATE TABLE fleet_workers (
    id           text COLLATE "C" PRIMARY KEY,  -- host:pid:random, also the owner of its locks
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    state        text NOT NULL,      -- idle | sending | draining | stopped
    campaign     text,
    sent         bigint NOT NULL DEFAULT 0,
    stopped_at   double precision,
    rate         double precision NOT NULL DEFAULT 0  -- messages/s of its run, recently
);
-- the send API's queue and idempotency keys (stampcli.store.postgres.api_queue)
CREATE TABLE api_messages (
    id           text COLLATE "C" PRIMARY KEY,  -- "msg_<hex>": what the send API answers
    pool         text NOT NULL,              -- the serve.yml pool whose key sent it
    state        text NOT NULL,              -- queued|sending|sent|partial|rejected|failed|unknown
    request      text NOT NULL,              -- the accepted request, JSON (attachments base64)
    created_at   double precision NOT NULL,
    updated_at   double precision NOT NULL,
    next_at      double precision NOT NULL DEFAULT 0,  -- queued: not before
    lease_owner  text,                       -- sending: the process that claimed it
    lease_until  double precision,           -- sending: after this, a dead owner's -> unknown
    attempts     integer NOT NULL DEFAULT 0,
    provider     text,
    results      text,                       -- JSON list, one answer per recipient
    detail       text
);
CREATE INDEX api_messages_due ON api_messages (state, next_at, created_at);

CREATE TABLE api_idempotency (
    pool         text COLLATE "C" NOT NULL,
    key          text COLLATE "C" NOT NULL,  -- the client's Idempotency-Key
    request_hash text NOT NULL,
    message_ids  text NOT NULL,              -- JSON list of api_messages ids
    wait         boolean NOT NULL,
    created_at   double precision NOT NULL,  -- keys live 24 h
    PRIMARY KEY (pool, key)
);
-- What the router counted per provider in each run, for `stamp report` (reports.py):
-- answers by outcome, failovers, throttle waits, circuit openings; and the adapter
-- calls' answer times, as counts per time bucket (records_report.ANSWER_BUCKETS_MS).
CREATE TABLE provider_tallies (
    run_id       bigint NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    campaign_id  bigint NOT NULL,           -- the run's campaign (runs cascade from it)
    provider     text COLLATE "C" NOT NULL, -- provider label
    metric       text COLLATE "C" NOT NULL, -- answers.<outcome>, failovers_out, ...
    value        bigint NOT NULL,
    PRIMARY KEY (run_id, provider, metric)
);
CREATE INDEX provider_tallies_by_campaign ON provider_tallies (campaign_id);
CREATE TABLE provider_answer_times (
    run_id       bigint NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    campaign_id  bigint NOT NULL,
    provider     text COLLATE "C" NOT NULL,
    le_ms        bigint NOT NULL,           -- the bucket's upper bound, milliseconds
    calls        bigint NOT NULL,
    PRIMARY KEY (run_id, provider, le_ms)
);
CREATE INDEX provider_answer_times_by_campaign ON provider_answer_times (campaign_id);
-- Several workers on one campaign (store/postgres/leases.py), added in version 6
-- (postgres/db.py MIGRATIONS[5] is this section): who they are, which pending or
-- sending rows each holds and until when, who plans, shared rate buckets.
CREATE TABLE campaign_workers (
    owner         text COLLATE "C" PRIMARY KEY,  -- host:pid:random
    campaign_id   bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    host          text NOT NULL,
    pid           integer NOT NULL,
    started_at    double precision NOT NULL,
    heartbeat_at  double precision NOT NULL,
    until         double precision NOT NULL,  -- taken over after this without a heartbeat
    claimed       bigint NOT NULL DEFAULT 0,
    rate          double precision NOT NULL DEFAULT 0
);
CREATE TABLE ledger_leases (
    ledger_id     bigint PRIMARY KEY,     -- no foreign key, as for the ledger's campaign_id
    campaign_id   bigint NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    owner         text COLLATE "C" NOT NULL,
    until         double precision NOT NULL
);
CREATE INDEX ledger_leases_by_owner ON ledger_leases (owner);
CREATE INDEX ledger_leases_by_campaign ON ledger_leases (campaign_id, until);
CREATE TABLE campaign_plans (
    campaign_id   bigint PRIMARY KEY REFERENCES campaigns(id) ON DELETE CASCADE,
    owner         text COLLATE "C",      -- the worker planning (NULL: given up)
    until         double precision NOT NULL,
    done_at       double precision       -- when that planning ended
);
CREATE TABLE rate_buckets (
    name          text COLLATE "C" PRIMARY KEY,  -- rate:<provider label>, rate:campaign:<name>
    tokens        double precision NOT NULL,
    stamp         double precision NOT NULL      -- the server's clock when tokens was computed
);
-- end of the lease tables
-- The report's read index (version 7; postgres/db.py MIGRATIONS[6] is this part): `stamp
-- report` reads a campaign's events through it alone (store/report_sql.py), each type one
-- range with its recipients in order, so distinct recipients need no sort, and the heap
-- (the raw event text, the bulk of a row) is not read where the visibility map allows.
CREATE INDEX IF NOT EXISTS events_for_report
    ON events (campaign_id, type, recipient, provider, ledger_id, bounce_kind, occurred_at);
-- Shared circuit breakers (version 8; postgres/db.py MIGRATIONS[7] is this part): a
-- provider one worker found down, so the others stop too
CREATE TABLE provider_breakers (
    name          text COLLATE "C" PRIMARY KEY,  -- breaker:<provider label>
    open_until    double precision NOT NULL,     -- the server's clock (epoch seconds)
    reason        text NOT NULL
);
-- end of the shared breakers
