-- Users of every tenant (db_name). Plugins write client tenants only; system.db holds staff.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    db_name TEXT NOT NULL,
    username TEXT NOT NULL,
    email TEXT,
    -- '!' is an unusable hash: users created by plugins cannot log in until a password is set.
    password_hash TEXT NOT NULL DEFAULT '!',
    is_active BOOLEAN NOT NULL DEFAULT 1,
    is_staff BOOLEAN NOT NULL DEFAULT 0,
    created_at DOUBLE NOT NULL,
    updated_at DOUBLE NOT NULL,
    UNIQUE (db_name, username)
);

CREATE TABLE identity_roles (
    name TEXT PRIMARY KEY NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    is_staff BOOLEAN NOT NULL DEFAULT 0,
    updated_by TEXT NOT NULL,
    updated_at DOUBLE NOT NULL
);

CREATE TABLE user_identity_tags (
    db_name TEXT NOT NULL,
    username TEXT NOT NULL,
    role_tag TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at DOUBLE NOT NULL,
    PRIMARY KEY (db_name, username)
);

CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at DOUBLE NOT NULL
);
CREATE INDEX events_name ON events (name);

CREATE TABLE plugin_state (
    name TEXT PRIMARY KEY NOT NULL,
    enabled BOOLEAN NOT NULL,
    updated_at DOUBLE NOT NULL
);
