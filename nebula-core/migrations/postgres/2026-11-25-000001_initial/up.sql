-- The PostgreSQL twin of migrations/sqlite/2026-11-25-000001_initial (same tables, columns and
-- keys; tests/tests/storage_backends.rs checks that both directories hold the same versions).
-- Text that is compared or ordered uses the "C" collation, so ordering and the events' prefix
-- match are byte order, as on SQLite, whatever the cluster's locale.
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    db_name TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    email TEXT,
    -- '!' is an unusable hash: users created by plugins cannot log in until a password is set.
    password_hash TEXT NOT NULL DEFAULT '!',
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    is_staff BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (db_name, username)
);

CREATE TABLE identity_roles (
    name TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    is_staff BOOLEAN NOT NULL DEFAULT FALSE,
    updated_by TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE user_identity_tags (
    db_name TEXT COLLATE "C" NOT NULL,
    username TEXT COLLATE "C" NOT NULL,
    role_tag TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (db_name, username)
);

CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    payload TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX events_name ON events (name);

CREATE TABLE plugin_state (
    name TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    enabled BOOLEAN NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
