-- "One real sync per plugin at a time" across every instance on this database (SPEC §4): a
-- lease taken with an insert or a conditional update, released when the sync ends, expiring
-- on its own if the instance that holds it dies.
CREATE TABLE plugin_sync_leases (
    name TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
