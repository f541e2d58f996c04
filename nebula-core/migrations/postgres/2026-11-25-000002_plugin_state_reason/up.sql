-- Why a plugin is disabled ("stopped by admin", "disabled by policy: …"), kept across restarts.
ALTER TABLE plugin_state ADD COLUMN reason TEXT NOT NULL DEFAULT '';
