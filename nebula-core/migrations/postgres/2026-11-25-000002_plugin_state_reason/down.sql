ALTER TABLE plugin_state DROP COLUMN reason;
